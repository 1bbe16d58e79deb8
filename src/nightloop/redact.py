"""PII and secret scrubbing: conversation text is redacted before anything is sent to a judge.

A small set of patterns, each replaced by a typed placeholder (``[EMAIL]``,
``[PHONE]``, ``[CARD]``, ``[IBAN]``, ``[SECRET]``). Patterns that match many
innocent strings (card numbers, IBANs) are confirmed with their checksum, so
order numbers, prices, dates and version numbers survive.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from nightloop.models import Conversation, Message

if TYPE_CHECKING:
    from nightloop.recognisers import Recogniser

__all__ = [
    "PATTERNS", "Pattern", "Redactor", "leaves_the_machine", "redact", "redact_conversation", "redact_messages", "redact_value",
    "storage_id", "with_storage_id",
]


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _only_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _card_number(match: re.Match[str]) -> bool:
    digits = _only_digits(match.group(0))
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _iban(match: re.Match[str]) -> bool:
    compact = re.sub(r"\s", "", match.group(0)).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _basic_credentials(match: re.Match[str]) -> bool:
    """Base64 that decodes to ``user:password`` (so "Basic information" is left alone)."""
    try:
        decoded = base64.b64decode(match.group("value"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in decoded and decoded.isprintable()


#: Words that follow "password is" without being a password ("my password is wrong").
_NOT_A_PASSWORD = frozenset(
    """a an the not no wrong incorrect invalid correct right expired required missing empty blank reset changed
    too still now different same locked blocked weak strong fine ok okay case sensitive""".split()
)


def _spoken_password(match: re.Match[str]) -> bool:
    return match.group("value").lower().strip("\"'“”") not in _NOT_A_PASSWORD


def _reads_as_text(match: re.Match[str]) -> bool:
    """Base64 that decodes to language is a message, not key material (and the copy check must see it)."""
    from nightloop.normalise import decoded_variants

    value = match.group(0).lstrip(":= \t\"'")
    readings = [r for r in decoded_variants(value) if r != value]
    return any(" " in r and sum(c.isalpha() or c.isspace() for c in r) / len(r) > 0.85 for r in readings[:3] if r)


def _phone_number(match: re.Match[str]) -> bool:
    return 8 <= len(_only_digits(match.group(0))) <= 15


def _national_phone_number(match: re.Match[str]) -> bool:
    # Nine digits at least, so dates written with spaces ("05 15 2024") survive.
    return 9 <= len(_only_digits(match.group(0))) <= 12


#: Turns a typed placeholder and the value it hides into the text that replaces it.
Namer = Callable[[str, str], str]


@dataclass(frozen=True)
class Pattern:
    """One kind of sensitive text: where it is, what replaces it, and an optional confirmation."""

    name: str
    regex: re.Pattern[str]
    placeholder: str
    confirm: Callable[[re.Match[str]], bool] | None = None
    #: Regex group kept in front of the placeholder (e.g. the ``api_key=`` of ``api_key=abc…``).
    keep_group: str | None = None
    #: Lowercase substrings one of which every match contains: a fast skip for text that has none.
    hints: tuple[str, ...] = ()

    def sub(self, text: str, lowered: str | None = None, name: Namer | None = None) -> str:
        if self.hints and not any(hint in (lowered or text.lower()) for hint in self.hints):
            return text
        return self.regex.sub(lambda match: self._replacement(match, name), text)

    def _replacement(self, match: re.Match[str], name: Namer | None = None) -> str:
        if self.confirm is not None and not self.confirm(match):
            return match.group(0)
        kept = match.group(self.keep_group) if self.keep_group else ""
        value = match.group(0)[len(kept) :] if kept and match.group(0).startswith(kept) else match.group(0)
        return f"{kept}{name(self.placeholder, value) if name else self.placeholder}"


_SECRET_KEY_NAMES = (
    r"api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?key(?:[_-]?id)?|"
    r"auth(?:[_-]?token)?|token|access[_-]?token|refresh[_-]?token|"
    r"password|passwd|pwd|private[_-]?key|session(?:[_-]?id)?"
)

#: Applied in order: secrets first (they may contain digits or ``@``), then contact and payment data.
PATTERNS: tuple[Pattern, ...] = (
    Pattern("anthropic_key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{16,}"), "[SECRET]", hints=("sk-ant-",)),
    Pattern(
        # Whatever the scheme (Basic, Bearer, Digest, a bare token): the header's value is a credential.
        "authorization_header",
        re.compile(
            r"""(?P<keep>\bauthorization["']?[ \t]*[:=][ \t]*["']?(?:(?:basic|bearer|digest|token|negotiate)[ \t]+)?)"""
            r"(?!\[SECRET\])(?!(?:basic|bearer|digest|token|negotiate)\b)[A-Za-z0-9._~+/-]{6,}=*",
            re.IGNORECASE,
        ),
        "[SECRET]",
        keep_group="keep",
        hints=("authorization",),
    ),
    Pattern(
        "basic_auth",
        re.compile(r"(?P<keep>\b[Bb]asic[ \t]+)(?P<value>[A-Za-z0-9+/]{6,}={0,2})(?![\w+/=])"),
        "[SECRET]",
        confirm=_basic_credentials,
        keep_group="keep",
        hints=("basic",),
    ),
    Pattern("openai_key", re.compile(r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{20,}"), "[SECRET]", hints=("sk-",)),
    Pattern("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "[SECRET]", hints=("akia", "asia")),
    Pattern(
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
        "[SECRET]",
        hints=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Pattern("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "[SECRET]", hints=("xox",)),
    Pattern(
        "jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "[SECRET]", hints=("eyj",)
    ),
    Pattern(
        "bearer_token",
        re.compile(r"(?P<keep>\b[Bb]earer\s+)[A-Za-z0-9._~+/-]{16,}=*"),
        "[SECRET]",
        keep_group="keep",
        hints=("bearer",),
    ),
    Pattern(
        "secret_assignment",
        re.compile(
            rf"""(?P<keep>\b(?:{_SECRET_KEY_NAMES})["']?[ \t]*[:=][ \t]*["']?)"""
            r"(?!\[SECRET\])[A-Za-z0-9_\-/+.~]{8,}=*",
            re.IGNORECASE,
        ),
        "[SECRET]",
        keep_group="keep",
        hints=("key", "secret", "token", "auth", "pass", "pwd", "session"),
    ),
    Pattern(
        # Said in words: "my password is hunter2!!", "the PIN was 1234", "passcode: abc".
        "spoken_password",
        re.compile(
            r"(?P<keep>\b(?:password|passwd|passcode|passphrase|pwd|pin)"
            r"(?:[ \t]+(?:is|was|would be|will be)[ \t]*[:=]?|[ \t]*[:=])"
            r"""[ \t]*["'“]?)(?!\[SECRET\])(?P<value>[^\s"'“”]+?)(?=[.,;]?(?:\s|$|["'”]))""",
            re.IGNORECASE,
        ),
        "[SECRET]",
        confirm=_spoken_password,
        keep_group="keep",
        hints=("pass", "pwd", "pin"),
    ),
    Pattern(
        # Any key=value whose value looks like key material (long hex or base64), whatever the key is called.
        "long_secret_value",
        re.compile(
            r"""(?P<keep>[:=][ \t]*["']?)"""
            # hex with at least one letter and one digit (a long decimal number is a result, not a key)
            r"(?:(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{32,}"
            # or base64 mixing digits, upper and lower case
            r"|(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Z])(?=[A-Za-z0-9+/_-]*[a-z])[A-Za-z0-9+/_-]{32,}=*)"
            r"(?![\w+/=-])"
        ),
        "[SECRET]",
        confirm=lambda match: not _reads_as_text(match),
        keep_group="keep",
    ),
    Pattern(
        "email",
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        "[EMAIL]",
        hints=("@",),
    ),
    Pattern(
        "iban",
        # Any case and grouping ("de89 3704 0044 …"): the mod-97 checksum keeps false positives out.
        re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", re.IGNORECASE),
        "[IBAN]",
        confirm=_iban,
    ),
    Pattern("card", re.compile(r"(?<![\d.,+])\d(?:[ -]?\d){12,18}(?!\d)(?![.,]\d)"), "[CARD]", confirm=_card_number),
    Pattern(
        "phone_international",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\d-])"),
        "[PHONE]",
        confirm=_phone_number,
    ),
    Pattern(
        "phone_north_american",
        re.compile(r"(?<![\w.-])(?:\(\d{3}\)\s?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-])"),
        "[PHONE]",
    ),
    Pattern(
        # National formats with a trunk zero: "020 7946 0958", "07700 900123", "06 12 34 56 78".
        "phone_national",
        re.compile(r"(?<![\w.-])0\d{1,4}(?:[ -]\d{2,6}){1,4}(?![\w-])"),
        "[PHONE]",
        confirm=_national_phone_number,
    ),
)


def _redact_patterns(text: str, name: Namer | None) -> str:
    lowered = text.lower()
    for pattern in PATTERNS:
        redacted = pattern.sub(text, lowered, name)
        if redacted != text:
            text, lowered = redacted, redacted.lower()
    return text


def _redact(text: str, name: Namer | None, recognisers: Sequence[Recogniser] | None, role: str | None = None) -> str:
    if not text:
        return text
    from nightloop.recognisers import AGENT_RECOGNISERS, DEFAULT_RECOGNISERS, apply_recognisers

    default = AGENT_RECOGNISERS if role == "assistant" else DEFAULT_RECOGNISERS
    chosen = default if recognisers is None else recognisers
    # To a fixed point: a refused match ("+44 20 7946 0958 4111 …" is too long for a phone) hides the values
    # inside it until the other value next to it is replaced.
    for _ in range(3):
        redacted = apply_recognisers(_redact_patterns(text, name), chosen, name)
        if redacted == text:
            break
        text = redacted
    return text


@lru_cache(maxsize=4096)
def redact(text: str, role: str | None = None) -> str:
    """``text`` with emails, phone numbers, cards, IBANs, national ids, secrets, IPs, dates of birth, passport
    numbers, names and street addresses replaced by typed placeholders (``[EMAIL]``, ``[NAME]`` …).

    ``role="assistant"``: the agent's own words, whose introductions and signatures name the business."""
    return _redact(text, None, None, role)


class Redactor:
    """Redaction with consistent placeholders: within one redactor (one night) the same value always gets the
    same numbered placeholder (``[EMAIL_1]``), so a model still sees that two messages name the same customer.

    ``recognisers`` replaces the default recognisers of names, addresses and identifiers
    (:mod:`nightloop.recognisers`), e.g. to add a Presidio/spaCy recogniser.
    """

    def __init__(self, recognisers: Sequence[Recogniser] | None = None) -> None:
        self._done: dict[tuple[str, str | None], str] = {}
        self._numbers: dict[tuple[str, str], str] = {}
        self._counts: Counter[str] = Counter()
        self._recognisers = recognisers

    def _name(self, placeholder: str, value: str) -> str:
        kind = placeholder.strip("[]")
        key = (kind, " ".join(value.lower().split()))
        if key not in self._numbers:
            self._counts[kind] += 1
            self._numbers[key] = f"[{kind}_{self._counts[kind]}]"
        return self._numbers[key]

    def text(self, text: str, role: str | None = None) -> str:
        if (text, role) not in self._done:  # conversations repeat themselves (system prompts, tool results)
            self._done[text, role] = _redact(text, self._name, self._recognisers, role)
        return self._done[text, role]

    def value(self, value: Any) -> Any:
        return _walk(value, self.text)

    def conversation(self, conv: Conversation) -> Conversation:
        return _redact_conversation(conv, self.text)


def _walk(value: Any, redact_text: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _walk(item, redact_text) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, redact_text) for item in value]
    return value


def redact_value(value: Any) -> Any:
    """Redact every string inside a JSON-like value (dicts, lists, strings); other values unchanged."""
    return _walk(value, redact)


def _redact_message(message: Message, redact_text: Callable[..., str]) -> Message:
    content = redact_text(message.content, message.role) if message.content else message.content
    update: dict[str, Any] = {"content": content}
    if message.tool_calls:
        update["tool_calls"] = [
            call.model_copy(
                update={"function": call.function.model_copy(update={"arguments": redact_text(call.function.arguments)})}
            )
            for call in message.tool_calls
        ]
    if message.name:
        update["name"] = redact_text(message.name)
    return message.model_copy(update=update)


def _redact_conversation(conv: Conversation, redact_text: Callable[[str], str]) -> Conversation:
    outcome = conv.outcome.model_copy(
        update={
            "error": redact_text(conv.outcome.error) if conv.outcome.error else conv.outcome.error,
            "expected": _walk(conv.outcome.expected, redact_text),
        }
    )
    if outcome.feedback is not None and outcome.feedback.comment:
        outcome.feedback = outcome.feedback.model_copy(update={"comment": redact_text(outcome.feedback.comment)})
    return conv.model_copy(
        update={
            "messages": [_redact_message(message, redact_text) for message in conv.messages],
            "variables": _walk(conv.variables, redact_text),
            "metadata": _walk(conv.metadata, redact_text),
            "outcome": outcome,
        }
    )


def redact_conversation(conv: Conversation) -> Conversation:
    """A copy of ``conv`` with message text, tool arguments, variables and outcome text redacted (the id is kept:
    it is the key the store and the failures use; show it through :func:`redact` where it leaves the machine)."""
    return _redact_conversation(conv, redact)


def leaves_the_machine(provider: str, base_url: str | None) -> bool:
    """True when a role's requests go to another machine (a hosted provider, or a server that is not local)."""
    if provider == "sim":
        return False
    if base_url is None:
        return True
    from urllib.parse import urlparse

    host = (urlparse(base_url).hostname or "").lower()
    return host not in ("localhost", "127.0.0.1", "::1") and not host.endswith(".localhost")


def redact_messages(messages: list[Message], redactor: Redactor) -> list[Message]:
    """``messages`` as a remote agent may see them in replay (the system prompt, our template, is kept)."""
    return [m if m.role == "system" else _redact_message(m, redactor.text) for m in messages]


#: Conversation ids that carry private data are stored under ``private-`` and letters from a hash of the id.
_PRIVATE_ID = re.compile(r"^private-[a-p]{20}$")
#: A fast first look (ingest calls this for every conversation): only an id with an ``@`` or a spelled "at",
#: whitespace or a long run of digits (a phone, card or national id) is read by the recognisers.
_MAYBE_PRIVATE_ID = re.compile(r"@|\s|[\[(](?i:at)[\])]|\b(?i:at)\b|\d(?:[ .()+/-]*\d){6,}")
#: ISO dates and times, which ids often carry and which are no one's private data.
_ISO_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T_ ]?\d{2}[:.-]?\d{2}(?:[:.-]?\d{2})?)?")


def storage_id(conversation_id: str) -> str:
    """The key a conversation is stored and referred to under: its own id, unless the id carries private data
    (``support-jane.doe@example.com-17``), which would otherwise spread to every table, report and page that
    names the conversation. Such an id becomes ``private-`` + 20 letters of its SHA-256 (the same id always gets
    the same key, so re-ingesting it is still a no-op); the original stays in the conversation's metadata."""
    if _PRIVATE_ID.match(conversation_id) or not _MAYBE_PRIVATE_ID.search(_ISO_STAMP.sub("-", conversation_id)):
        return conversation_id
    if redact(conversation_id) == conversation_id:
        return conversation_id
    from nightloop.models import sha256_text

    letters = "".join(chr(ord("a") + int(digit, 16)) for digit in sha256_text(conversation_id)[:20])
    return f"private-{letters}"


def with_storage_id(conversation: Conversation) -> Conversation:
    """``conversation`` under its :func:`storage_id` (unchanged when its id carries nothing private)."""
    key = storage_id(conversation.id)
    if key == conversation.id:
        return conversation
    metadata = {**conversation.metadata, "original_id": conversation.id}
    return conversation.model_copy(update={"id": key, "metadata": metadata})
