"""The sim judge: maps failure evidence to instructions the template lacks, and proposes K small revisions.

It reads the current template and the failures (ids in ``<conversation_id>#<kind>@<turn>`` form, each followed
by its evidence) from the judge prompt, and answers with the same ``JudgeOutput`` a real judge returns. Its
instruction lines are its own phrasings, never sentences from the conversations. One candidate in K (K >= 3)
is deliberately unhelpful or harmful, so the gate has real work.
"""

from __future__ import annotations

import random
import re

from nightloop.llm.sim.behaviours import BEHAVIOUR_NAMES, BEHAVIOURS, behaviour, behaviours_in_text, read_prompt
from nightloop.models import FAILURE_KINDS, JudgeOutput, ProposedCandidate, ProposedEdit

__all__ = ["DEFAULT_K", "extract_template", "failure_evidence", "failure_weights", "insert_lines", "judge_reply", "requested_k"]

DEFAULT_K = 4
#: Every rationale says who wrote it: the simulator is labelled as such wherever its output is shown.
LABEL = "(simulated judge) "

FAILURE_ID_RE = re.compile(r"([\w.:\-]+)#(" + "|".join(FAILURE_KINDS) + r")@(\d+|-)")
_TAGGED_TEMPLATE_RE = re.compile(
    r"<(current_template|template|current_prompt|prompt_template|prompt)(?:\s[^>]*)?>\n?(.*?)\n?</\1>", re.DOTALL | re.IGNORECASE
)
_FENCED_RE = re.compile(r"```[ \t]*(?:jinja2?|j2|django|text|txt)?[ \t]*\n(.*?)\n?```", re.DOTALL)
_K_RE = re.compile(r"\b(\d{1,2})\s+(?:[\w-]+\s+){0,2}?(?:candidates?|revisions?|alternatives?|variants?|versions?|templates?)\b", re.IGNORECASE)
_K_ASKED_RE = re.compile(r"\b(?:propose|return|give|generate|write|produce|suggest)\s+(?:exactly\s+|up to\s+)?(\d{1,2})\b", re.IGNORECASE)
_K_EQ_RE = re.compile(r"\bk\s*=\s*(\d{1,2})\b", re.IGNORECASE)
_EVIDENCE_WINDOW = 1500
_SECTION_RE = re.compile(r"\n#{1,3}\s")
_EVIDENCE_BLOCK_RE = re.compile(r"evidence:\s*(?:<conversation_data>)?\s*(.*?)(?:</conversation_data>|\n\s*-\s|\Z)", re.DOTALL | re.IGNORECASE)
_USER_LINE_RE = re.compile(r"^\s*(?:\[turn \d+\]\s*)?user\s*:\s*(.*)$", re.MULTILINE | re.IGNORECASE)
_GROUP_SPLIT_RE = re.compile(r"\n(?=## )")
_HIDDEN_RE = re.compile(r"(\d+)\s+more\s+(?:like these|like this|similar|failures?|not shown)", re.IGNORECASE)
_API_RE = re.compile(r'"eta"|"status"|order_status|\bjson\b', re.IGNORECASE)
_BULLET_RE = re.compile(r"^(\s*)([-*•]|\d+[.)])\s+")

UNHELPFUL_LINES = (
    "Always be helpful and accurate.",
    "Read the customer's message carefully before answering.",
    "Stay calm and professional, even with upset customers.",
)
HARMFUL_LINES = {
    "short": "Keep every answer under 10 words.",
    "no_order_numbers": "Never mention order numbers; customers know their own orders.",
    "english": "Always answer in English.",
}


def requested_k(text: str) -> int:
    """How many candidates the judge prompt asks for."""
    match = _K_ASKED_RE.search(text) or _K_RE.search(text) or _K_EQ_RE.search(text)
    return min(max(int(match.group(1)), 1), 10) if match else DEFAULT_K


def extract_template(text: str) -> str | None:
    """The current template quoted in the judge prompt: a tagged block first, then a fenced block with Jinja in it."""
    tagged = [m.group(2) for m in _TAGGED_TEMPLATE_RE.finditer(text)]
    if tagged:
        return max(tagged, key=lambda t: ("{{" in t, len(t)))
    fenced = [m.group(1) for m in _FENCED_RE.finditer(text)]
    with_jinja = [f for f in fenced if "{{" in f or "{%" in f]
    if with_jinja:
        return with_jinja[0]
    return None


def _attribute(segment: str, kind: str) -> tuple[set[str], bool]:
    """The behaviours one failure's evidence points at, and whether the pointer is direct.

    Direct: the kind itself (a timeout is a tool loop; a wrong API answer is missing JSON) or what the customer
    said (the evidence excerpt, the user turns). Indirect: features of the agent's answers quoted around it.
    """
    if kind == "timeout":
        return {"tool_discipline"}, True
    if kind in ("wrong_output", "format") and _API_RE.search(segment):
        return {"json_api"}, True
    # Tool calls and results appear in most transcripts: only a timeout or a wrong API answer says more.
    ignored = {"tool_discipline", "json_api"}
    evidence = _EVIDENCE_BLOCK_RE.search(segment)
    said = " ".join([evidence.group(1) if evidence else "", *_USER_LINE_RE.findall(segment)])
    direct = set(behaviours_in_text(said)) - ignored
    if direct:
        return direct, True
    return set(behaviours_in_text(segment)) - ignored, False


def _segments(text: str) -> list[tuple[str, str, str]]:
    """(failure id, kind, the text that follows it up to the next id or heading)."""
    matches = list(FAILURE_ID_RE.finditer(text))
    segments = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        segment = text[match.end() : min(end, match.end() + _EVIDENCE_WINDOW)]
        segment = _SECTION_RE.split(segment, maxsplit=1)[0]  # stop at the next heading (a group's summary)
        segments.append((match.group(0), match.group(2), segment))
    return segments


def failure_evidence(text: str) -> dict[str, set[str]]:
    """Failure id -> the behaviours its evidence shows missing."""
    found: dict[str, set[str]] = {}
    for failure_id, kind, segment in _segments(text):
        found.setdefault(failure_id, set()).update(_attribute(segment, kind)[0])
    return found


def _direct_ids(text: str) -> set[str]:
    return {failure_id for failure_id, kind, segment in _segments(text) if _attribute(segment, kind)[1]}


def failure_weights(text: str) -> dict[str, float]:
    """How many failures each shown one stands for: a group saying "N more like these" spreads N over its shown ids."""
    weights: dict[str, float] = {}
    for section in _GROUP_SPLIT_RE.split(text):
        ids = list(dict.fromkeys(m.group(0) for m in FAILURE_ID_RE.finditer(section)))
        hidden = _HIDDEN_RE.search(section)
        extra = int(hidden.group(1)) / len(ids) if hidden and ids else 0.0
        for failure_id in ids:
            weights[failure_id] = 1.0 + extra
    return weights


def _depth_zero_bullets(lines: list[str]) -> list[int]:
    """Indices of bullet lines outside any {% if %}/{% for %} block."""
    depth, bullets = 0, []
    for i, line in enumerate(lines):
        if depth == 0 and _BULLET_RE.match(line) and "{%" not in line:
            bullets.append(i)
        depth += len(re.findall(r"{%-?\s*(?:if|for)\b", line)) - len(re.findall(r"{%-?\s*(?:endif|endfor)\b", line))
    return bullets


def insert_lines(template: str, new_lines: list[str]) -> str:
    """Add instruction lines after the template's last top-level bullet (or at the end), in its bullet style."""
    lines = template.split("\n")
    bullets = _depth_zero_bullets(lines)
    if bullets:
        at = bullets[-1]
        match = _BULLET_RE.match(lines[at])
        prefix = (match.group(1) + ("- " if match.group(2)[0].isdigit() else match.group(2) + " ")) if match else "- "
        lines[at + 1 : at + 1] = [prefix + line for line in new_lines]
        return "\n".join(lines)
    trailing = template.endswith("\n")
    body = template.rstrip("\n")
    return body + "\n" + "\n".join(new_lines) + ("\n" if trailing else "")


def _remove_lines(template: str, predicate) -> tuple[str, list[str]]:
    lines = template.split("\n")
    kept = [line for line in lines if not predicate(line)]
    removed = [line for line in lines if predicate(line)]
    return "\n".join(kept), removed


def _plans(missing: list[str]) -> list[list[str]]:
    if len(missing) <= 1:
        return [missing]
    combos = [[missing[0]], missing[:2], [missing[1]]]
    if len(missing) > 2:
        combos += [[missing[0], missing[2]], [missing[1], missing[2]], [missing[2]]]
    return combos


def _helpful(template: str, plan: list[str], evidence: dict[str, list[str]], variant: int) -> ProposedCandidate:
    revised = template
    for name in plan:
        # An instruction that says the opposite has to go before the new one can work.
        revised, _ = _remove_lines(
            revised, lambda line, n=name: "{{" not in line and n in read_prompt(line).forbidden
        )
    lines = [behaviour(name).instructions[variant % len(behaviour(name).instructions)] for name in plan]
    revised = insert_lines(revised, lines)
    edits = [
        ProposedEdit(
            description=f"Add an instruction to {behaviour(name).summary}.",
            addresses=evidence.get(name, []),
            why=f"{len(evidence.get(name, []))} failure(s) show the agent does not {behaviour(name).summary}.",
        )
        for name in plan
    ]
    rationale = LABEL + "Tell the agent explicitly to " + " and to ".join(behaviour(n).summary for n in plan) + "."
    return ProposedCandidate(template=revised, rationale=rationale, edits=edits)


def _bad(template: str, top_ids: list[str], rng: random.Random) -> ProposedCandidate:
    droppable = [
        line for line in template.split("\n")
        if _BULLET_RE.match(line) and "{{" not in line and "{%" not in line and read_prompt(line).instructed
    ]
    choice = rng.choice(["unhelpful", "short", "no_order_numbers", "drop" if droppable else "english"])
    if choice == "unhelpful":
        line = rng.choice(UNHELPFUL_LINES)
        return ProposedCandidate(
            template=insert_lines(template, [line]),
            rationale=LABEL + "Remind the agent to read carefully and answer accurately.",
            edits=[ProposedEdit(description="Add a general reminder to be careful and accurate.", addresses=top_ids,
                                why="Careless answers caused these failures.")],
        )
    if choice == "drop":
        victim = rng.choice(droppable)
        revised, _ = _remove_lines(template, lambda line: line == victim)
        return ProposedCandidate(
            template=revised,
            rationale=LABEL + "Shorten the prompt by removing an instruction that looks redundant.",
            edits=[ProposedEdit(description="Remove a redundant instruction.", addresses=[], why="A shorter prompt is easier to follow.")],
        )
    line = HARMFUL_LINES[choice]
    return ProposedCandidate(
        template=insert_lines(template, [line]),
        rationale=LABEL + "Make answers more focused.",
        edits=[ProposedEdit(description=f"Add the instruction: {line}", addresses=top_ids, why="Shorter, focused answers fail less.")],
    )


def judge_reply(prompt_text: str, *, rng: random.Random) -> JudgeOutput:
    """K candidate templates for the judge prompt ``prompt_text`` (the user messages, joined)."""
    template = extract_template(prompt_text)
    if template is None:
        return JudgeOutput(candidates=[])
    data = prompt_text.replace(template, "")
    k = requested_k(data)
    failures = failure_evidence(data)
    # A group's hidden failures count only where the shown ones point at a behaviour directly.
    direct = _direct_ids(data)
    weights = {i: w if i in direct else 1.0 for i, w in failure_weights(data).items()}
    by_behaviour: dict[str, list[str]] = {}
    for failure_id in sorted(failures):
        for name in sorted(failures[failure_id]):
            by_behaviour.setdefault(name, []).append(failure_id)
    counts = {name: sum(weights.get(i, 1.0) for i in ids) for name, ids in by_behaviour.items()}
    reading = read_prompt(template)
    ranked = sorted(counts, key=lambda n: (-counts[n], BEHAVIOUR_NAMES.index(n)))
    missing = [n for n in ranked if n not in reading.instructed or n in reading.forbidden]
    if not missing:
        missing = ranked or [b.name for b in BEHAVIOURS if b.name not in reading.instructed][:1] or ["word_limit"]
    top_ids = by_behaviour.get(missing[0], [])
    plans = _plans(missing)
    bad_slot = rng.randrange(1, k) if k >= 3 else None
    phrasing = rng.randrange(3)
    candidates = []
    for i in range(k):
        if i == bad_slot:
            candidates.append(_bad(template, top_ids, rng))
        else:
            candidates.append(_helpful(template, plans[i % len(plans)], by_behaviour, phrasing + i))
    return JudgeOutput(candidates=candidates)
