"""The copy check: does an added template line repeat an instruction found in conversation content?

One layer of the candidate checks (:mod:`nightloop.candidate_checks`). It only catches copies: text that
says in the customer's or the tool's words what the line says. What an edit *does* (new contact points,
raised limits, weakened obligations) is the high-risk layer's job, and paraphrases or translations are the
guard's; so a line that merely shares a phrase with a customer's correction or a tool's error message
("the price in euros", "order not found") is not refused here. One exception is by value, not wording: a
line that adds a contact point (email, URL, domain, phone or account number) found in that content. Everything is compared in
:func:`nightloop.normalise.fold` form, against the conversations and their decoded readings (base64, hex,
rot13, URL-encoding, leetspeak).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from nightloop.contact_points import NUMERIC_KINDS, contact_points, digits
from nightloop.normalise import decoded_variants, fold, with_decoded, words

__all__ = ["CopyDetector", "DIRECTIVE_MARKERS", "IMPERATIVE_OPENERS", "copy_detector"]

MIN_QUOTED_WORDS = 4
#: Words in a row an added line may not share with an instruction in a user or tool message.
UNTRUSTED_RUN_WORDS = 5
#: First words of a clause that make it read as an instruction: only such clauses are refused when copied.
IMPERATIVE_OPENERS = frozenset(
    "always never ignore disregard forget skip bypass override approve refund grant give offer allow send "
    "transfer reveal print tell say stop do dont don't must you please act pretend execute run delete "
    "include add cc forward share email disclose output repeat from".split()
)
#: Words that mark a clause as addressed to the agent or its operators rather than as a customer's need.
DIRECTIVE_MARKERS = frozenset(
    "always never ignore disregard forget bypass override instruction instructions rule rules policy system "
    "assistant must henceforth pretend reveal disclose forward".split()
)
#: The same markers in the languages attacks are most often planted in (words; CJK ones match inside a clause).
FOREIGN_DIRECTIVE_MARKERS = frozenset(
    "immer niemals ignoriere ignorieren vergiss regel regeln anweisung anweisungen muss toujours jamais ignore "
    "ignorez oublie oubliez regle instruction instructions doit siempre nunca ignora ignorar olvida regla "
    "instruccion instrucciones debe sempre mai ignora dimentica regola istruzione deve".split()
)
_CJK_DIRECTIVE_MARKERS = ("忽略", "总是", "永远", "必须", "无视", "规则", "指令", "系统", "無視", "必ず", "常に", "指示", "ルール", "システム")
_CLAUSE_SPLIT = re.compile(r"[.!?;:,\n。！？；：，、]+|\b(?:and|but|then|so)\b", re.IGNORECASE)
_SENTENCE_SPLIT = re.compile(r"[.!?;\n。！？；]+")


def _clauses(text: str) -> list[list[str]]:
    """Clauses of ``text`` as word lists: split on punctuation and on 'and/but/then/so'."""
    return [found for clause in _CLAUSE_SPLIT.split(fold(text)) if (found := words(clause))]


def _sentences(text: str) -> list[list[str]]:
    return [found for sentence in _SENTENCE_SPLIT.split(fold(text)) if (found := words(sentence))]


def _ngrams(items: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(items[i : i + n]) for i in range(len(items) - n + 1)}


def _joined(items: Sequence[str]) -> str:
    """Words as one string padded with spaces, so substring search matches whole words only."""
    return f" {' '.join(items)} "


def _is_directive(clause: Sequence[str]) -> bool:
    if clause[0] in IMPERATIVE_OPENERS or any(w in DIRECTIVE_MARKERS or w in FOREIGN_DIRECTIVE_MARKERS for w in clause):
        return True
    joined = "".join(clause)
    return any(marker in joined for marker in _CJK_DIRECTIVE_MARKERS)


class CopyDetector:
    """Finds added lines that copy conversation content (text already in the base template does not count).

    On every message (the agent may have echoed an injection): a run of ``ngram`` words shared with it.
    On user and tool messages and evidence, whose clauses nobody on our side wrote, but only for their
    directive clauses (an imperative opening, or words like "always", "ignore", "policy", "system"):
    a run of ``UNTRUSTED_RUN_WORDS`` words; a whole clause of at least four words contained in the line;
    the first four words of such a clause; a sentence of the line of at least four words found inside one.
    """

    def __init__(self, texts: Iterable[str], user_texts: Iterable[str], ngram: int, base_template: str) -> None:
        self.ngram = ngram
        base_words = words(base_template)
        base = _joined(base_words)
        base_runs = {n: _ngrams(base_words, n) for n in {ngram, UNTRUSTED_RUN_WORDS}}
        untrusted = with_decoded(list(dict.fromkeys(user_texts)))
        # The agent's own messages are compared as written; only what users and tools wrote can hide an encoding.
        all_texts = list(dict.fromkeys([*texts, *untrusted]))
        clauses = [c for text in untrusted for c in _clauses(text) if _is_directive(c)]
        self.long_runs = set().union(*(_ngrams(words(t), ngram) for t in all_texts)) - base_runs[ngram]
        self.short_runs = (
            set().union(*(_ngrams(c, UNTRUSTED_RUN_WORDS) for c in clauses)) - base_runs[UNTRUSTED_RUN_WORDS]
        )
        long_clauses = [clause for clause in clauses if len(clause) >= MIN_QUOTED_WORDS]
        self.directives = [_joined(clause) for clause in long_clauses]
        self.quoted = {
            quoted
            for clause in long_clauses
            for quoted in (_joined(clause), _joined(clause[:MIN_QUOTED_WORDS]))
            if quoted not in base
        }
        base_points = {_point_key(kind, value) for kind, value in contact_points(base_template)}
        self.planted_points = {
            _point_key(kind, value): value
            for text in untrusted
            for kind, value in contact_points(text)
            if _point_key(kind, value) not in base_points
        }

    def borrowed_contacts(self, line: str) -> list[str]:
        """Contact points (email, URL, domain, phone, account number) ``line`` takes from what users, tools or
        feedback wrote, in any of its readings. Whatever the wording around it, such a line sends customers or
        their money where conversation content said to; the base template's own contact points do not count."""
        for reading in [line, *decoded_variants(line)]:  # the line as written first: its values are the readable ones
            found = {
                value
                for kind, point in contact_points(reading)
                if (value := self.planted_points.get(_point_key(kind, point))) is not None
            }
            if found:
                return sorted(found)
        return []

    def copied(self, line: str) -> bool:
        """True when ``line``, or what its encoding hides, copies an instruction from the conversations."""
        return any(self._copied(reading) for reading in [line, *decoded_variants(line)])

    def _copied(self, line: str) -> bool:
        line_words = words(line)
        if _ngrams(line_words, self.ngram) & self.long_runs:
            return True
        if _ngrams(line_words, UNTRUSTED_RUN_WORDS) & self.short_runs:
            return True
        line_text = _joined(line_words)
        if any(quoted in line_text for quoted in self.quoted):
            return True
        return any(
            _joined(sentence) in directive
            for sentence in _sentences(line)
            if len(sentence) >= MIN_QUOTED_WORDS
            for directive in self.directives
        )


def _point_key(kind: str, value: str) -> str:
    """One key per contact point, whatever its kind was read as (a long number is a phone and an account)."""
    return digits(value) if kind in NUMERIC_KINDS else value


@lru_cache(maxsize=2)
def copy_detector(texts: tuple[str, ...], user_texts: tuple[str, ...], ngram: int, base_template: str) -> CopyDetector:
    """The detector for one night's conversations (cached: every candidate is checked against the same)."""
    return CopyDetector(texts, user_texts, ngram, base_template)
