"""Recognisers of private data in free text, backed by well-kept libraries where one exists.

Each recogniser finds spans of one or more kinds; :func:`apply_recognisers` replaces them (longest span wins
where two overlap). The defaults:

- credentials: ``detect-secrets`` detectors (AWS, Stripe, Slack webhooks and tokens, GitHub, GitLab, JWT,
  private keys, npm, PyPI, SendGrid, Twilio, …) plus patterns for what it does not cover (Google, Hugging Face,
  AWS secret keys in prose, whole PEM blocks, passwords in prose in German, French and Spanish);
- phone numbers: ``phonenumbers`` (valid numbers only, with or without separators);
- national ids with checksums: ``python-stdnum`` (US SSN, Spanish DNI/NIE, German tax id, French NIR, Italian
  codice fiscale, Dutch BSN in context) and the UK NINO by its format rules (stdnum has no NINO module);
- IBANs: ``schwifty`` (any grouping: spaces, dashes, dots); payment cards with dots or dashes (Luhn);
- IP addresses (``ipaddress``), dates of birth and passport numbers (in context), IDN and spelled-out emails;
- person names and street addresses: **pattern recognisers** (an introduction such as "my name is", a title,
  a signature, a JSON ``name``/``address`` field, a number + street word in English, German, French, Spanish
  or Italian). Without an NER model, a bare name or address in running text with none of these cues is **not**
  recognised: pass a :class:`PresidioRecogniser` (``pip install presidio-analyzer`` and a spaCy model) to
  :class:`nightloop.redact.Redactor` to cover that.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import phonenumbers
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import luhn
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.de import idnr
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.us import ssn

__all__ = ["AGENT_RECOGNISERS", "DEFAULT_RECOGNISERS", "PresidioRecogniser", "Recogniser", "Span", "apply_recognisers"]


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    placeholder: str  # e.g. "[NAME]"


class Recogniser(Protocol):
    """Finds private data in ``text``: every span it returns is replaced by its typed placeholder.

    Contract: spans lie within ``text``, never cover an existing placeholder (``[EMAIL]``, ``[NAME_2]``), and
    the recogniser never raises on any string.
    """

    def find(self, text: str) -> Iterable[Span]: ...


_PLACEHOLDER = re.compile(r"\[[A-Z_]+(?:_\d+)?\]")


def apply_recognisers(text: str, recognisers: Sequence[Recogniser], name: Callable[[str, str], str] | None) -> str:
    """``text`` with every recognised span replaced (longest first where spans overlap)."""
    spans = [span for recogniser in recognisers for span in recogniser.find(text)]
    if not spans:
        return text
    taken = [(m.start(), m.end()) for m in _PLACEHOLDER.finditer(text)]
    chosen: list[Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if span.end <= span.start or any(span.start < end and start < span.end for start, end in taken):
            continue
        chosen.append(span)
        taken.append((span.start, span.end))
    for span in sorted(chosen, key=lambda s: -s.start):
        value = text[span.start : span.end]
        text = text[: span.start] + (name(span.placeholder, value) if name else span.placeholder) + text[span.end :]
    return text


@dataclass(frozen=True)
class RegexRecogniser:
    """Spans of ``regex`` (group ``value`` when it has one), kept when ``confirm`` accepts the value."""

    regex: re.Pattern[str]
    placeholder: str
    confirm: Callable[[str], bool] | None = None

    def find(self, text: str) -> Iterable[Span]:
        group = "value" if "value" in self.regex.groupindex else 0
        position = 0
        while (match := self.regex.search(text, position)) is not None:
            value = match.group(group)
            if value is not None and (self.confirm is None or self.confirm(value)):
                yield Span(match.start(group), match.end(group), self.placeholder)
                position = max(match.end(), match.start() + 1)
            else:  # a refused match may hide a real one that starts inside it ("me at anna (at) gmail …")
                position = match.start() + 1


# --- Credentials -------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _secret_detectors() -> list:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    noisy = ("Base64 High Entropy String", "Hex High Entropy String", "Secret Keyword", "Public IP (ipv4)")
    return [cls() for kind, cls in get_mapping_from_secret_type_to_class().items() if kind not in noisy]


class DetectSecretsRecogniser:
    """Credentials found by the detect-secrets detectors (regex based, high-entropy detectors left out)."""

    def find(self, text: str) -> Iterable[Span]:
        if not re.search(r"[A-Za-z0-9_/+=-]{16,}|PRIVATE KEY", text):
            return
        for detector in _secret_detectors():
            try:
                found = set(detector.analyze_string(text))
            except Exception:  # a third-party detector must never stop a night
                continue
            for secret in found:
                if len(secret) < 8 or secret.strip().upper().endswith("PRIVATE KEY"):
                    continue  # PEM headers: the whole block is the PEM recogniser's
                for match in re.finditer(re.escape(secret), text):
                    yield Span(match.start(), match.end(), "[SECRET]")


_CREDENTIAL_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),  # Google API key
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face token
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}\b"),  # Stripe, any key kind
    re.compile(r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+"),
    re.compile(r"\bya29\.[0-9A-Za-z_-]{20,}"),  # Google OAuth access token
    re.compile(r"\bglpat-[0-9A-Za-z_-]{20}\b"),
]
_AWS_SECRET = re.compile(
    r"(?i:aws|secret|access)[^\n]{0,40}?(?<![A-Za-z0-9/+])(?P<value>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_SPOKEN_PASSWORD = re.compile(
    r"(?i:\b(?:passwort|kennwort|mot de passe|contrase[ñn]a|password|passcode|pin)\b"
    r"(?:\s+(?:ist|lautet|war|est|es|era|is|was)\b)?\s*[:=]?\s*[\"'“„«]?)"
    r"(?P<value>(?=\S*[\d!@#$%^&*_-])[^\s\"'“”„«»]{4,})"
)


def _credential_recognisers() -> list[Recogniser]:
    recognisers: list[Recogniser] = [DetectSecretsRecogniser()]
    recognisers += [RegexRecogniser(regex, "[SECRET]") for regex in _CREDENTIAL_PATTERNS]
    recognisers += [
        RegexRecogniser(_AWS_SECRET, "[SECRET]", confirm=lambda v: bool(re.search(r"\d", v) and re.search(r"[A-Z]", v))),
        RegexRecogniser(_SPOKEN_PASSWORD, "[SECRET]"),
    ]
    return recognisers


# --- Contact data, ids, money ------------------------------------------------------------------------------


class PhoneRecogniser:
    """Valid phone numbers (``phonenumbers``), with or without separators, international or national.

    Runs of digits that could be a number are parsed one by one (the library's matcher scans every region
    over all text, which is too slow for a night of conversations). Valid is not enough: short national
    numbers look like dates and order ids, so international numbers need 8 digits and national ones 10,
    outside North America with their trunk 0.
    """

    REGIONS = ("GB", "DE", "FR", "ES", "IT")
    CANDIDATE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ()./-]{6,22}\d(?![\w])")

    def find(self, text: str) -> Iterable[Span]:
        if sum(char.isdigit() for char in text) < 8:
            return
        for match in self.CANDIDATE.finditer(text):
            candidate = match.group(0)
            for end in self._ends(candidate):
                if self._valid(candidate[:end]):
                    yield Span(match.start(), match.start() + end, "[PHONE]")
                    break

    @staticmethod
    def _ends(candidate: str) -> list[int]:
        """The candidate, then shorter prefixes ending at a group boundary ("+44 20 7946 0958 4111 …")."""
        ends = [len(candidate)] + [m.start() for m in re.finditer(r"[ ./-]+", candidate)][::-1]
        return [end for end in ends if sum(c.isdigit() for c in candidate[:end]) >= 8]

    def _valid(self, raw: str) -> bool:
        digits = re.sub(r"\D", "", raw)
        international = raw.lstrip("(").startswith(("+", "00"))
        if international:
            regions: tuple[str | None, ...] = (None,)
            raw = "+" + raw.lstrip("(")[2:] if raw.lstrip("(").startswith("00") else raw
        elif len(digits) < 10:
            return False
        else:
            regions = self.REGIONS if digits.startswith("0") else ("US",)
        for region in regions:
            try:
                number = phonenumbers.parse(raw, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False


_EMAIL_IDN = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.\w{2,}")
_EMAIL_SPELLED = re.compile(
    r"\b[\w.+-]+\s*(?:\(at\)|\[at\]|\{at\}|<at>|\s+at\s+|＠)\s*[\w-]+(?:\s*(?:\(dot\)|\[dot\]|\{dot\}|\[\.\]|\s+dot\s+|\.)\s*[\w-]+)+",
    re.IGNORECASE,
)


def _spelled_email(value: str) -> bool:
    return bool(re.search(r"\b(?:dot|com|net|org|de|fr|io|uk|es|it)\b|\(dot\)|\[dot\]|\[\.\]", value, re.IGNORECASE))


def _valid_iban(value: str) -> bool:
    try:
        IBAN(re.sub(r"[\s.-]", "", value))
    except SchwiftyException:
        return False
    return True


class IbanRecogniser:
    """IBANs in any grouping (spaces, dashes, dots), validated by ``schwifty`` (country length and checksum)."""

    CANDIDATE = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ .-]?[A-Za-z0-9]){11,30}")

    def find(self, text: str) -> Iterable[Span]:
        for match in self.CANDIDATE.finditer(text):
            candidate = match.group(0)
            for end in range(len(candidate), 14, -1):  # the longest valid prefix: an IBAN can be followed by words
                if candidate[end - 1].isalnum() and _valid_iban(candidate[:end]):
                    yield Span(match.start(), match.start() + end, "[IBAN]")
                    break


def _card(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _nino(value: str) -> bool:
    """A UK National Insurance number by its published format rules (python-stdnum has no ``gb.nino``)."""
    compact = re.sub(r"\s", "", value).upper()
    if not re.fullmatch(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]", compact):
        return False
    return compact[:2] not in {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


_NATIONAL_IDS: list[tuple[re.Pattern[str], Callable[[str], bool]]] = [
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), ssn.is_valid),
    (re.compile(r"(?i:ssn|social security)\D{0,20}(?P<value>\d{9})\b"), ssn.is_valid),
    (re.compile(r"\b[A-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b", re.IGNORECASE), _nino),
    (re.compile(r"(?i:steuer-?id|steuer-identifikationsnummer|idnr|tax id)\D{0,20}(?P<value>\d{2}\s?\d{3}\s?\d{3}\s?\d{3})\b"), idnr.is_valid),
    (re.compile(r"\b\d{8}-?[A-Z]\b", re.IGNORECASE), dni.is_valid),
    (re.compile(r"\b[XYZ]-?\d{7}-?[A-Z]\b", re.IGNORECASE), nie.is_valid),
    (re.compile(r"\b[12]\s?\d{2}\s?\d{2}\s?\d{2}\s?\d{3}\s?\d{3}\s?\d{2}\b"), nir.is_valid),
    (re.compile(r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b", re.IGNORECASE), codicefiscale.is_valid),
    (re.compile(r"(?i:bsn|burgerservicenummer)\D{0,20}(?P<value>\d{9})\b"), bsn.is_valid),
]


def _ip(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


_DATE = r"(?:\d{1,4}[./-]\d{1,2}[./-]\d{1,4}|\d{1,2}\.?\s+[A-Za-zäéû]{3,9}\.?\s+\d{4}|[A-Za-z]{3,9}\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})"
_DOB = re.compile(
    rf"(?i:born(?:\s+on)?|date of birth|d\.?o\.?b\.?|birth\s?date|birthday|geboren(?:\s+am)?|geburtsdatum|"
    rf"n[ée]e?\s+le|date de naissance|fecha de nacimiento|nacid[oa]\s+el)\W{{0,4}}(?P<value>{_DATE})"
)
_PASSPORT = re.compile(
    r"(?i:passport|reisepass|passeport|pasaporte|passaporto)(?:\s+(?:number|no\.?|nr\.?|num[eé]ro|n[uú]mero|#))?"
    r"\W{0,4}(?:is\s+|ist\s+|est\s+|es\s+)?(?P<value>(?=[A-Z0-9]*\d)[A-Z0-9]{6,9})\b"
)

_CAPITALISED = r"[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'’]+(?:-[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ'’]+)*"
_FULL_NAME = rf"{_CAPITALISED}(?:\s+(?:van|von|de|da|del|der|le|la|di|du|bin|al)\b)?(?:\s+{_CAPITALISED}){{0,2}}"
_NAME_CUES = re.compile(
    rf"(?:\b(?i:my name is|my name's|name is|i am|i'm|this is|call me|signed|regards|best|cheers|thanks|thank you|"
    rf"sincerely|ich heiße|ich bin|mein name ist|je m'appelle|je suis|me llamo|soy|mi chiamo|sono|customer|"
    rf"client|kunde|passenger|account holder|cardholder)[,:]?\s+|\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Herr|Frau|Mme|Mlle|"
    rf"M|Sr|Sra|Srta|Sig|Sig\.ra)\.?\s+)(?P<value>{_FULL_NAME})"
)
#: In the agent's own messages, introductions and signatures name the business ("Kind regards, Acme Outdoor"):
#: only titles and "customer …" cues count there.
_NAME_CUES_IN_AGENT_TEXT = re.compile(
    rf"(?:\b(?i:customer|client|kunde|passenger|account holder|cardholder|dear)[,:]?\s+|\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|"
    rf"Herr|Frau|Mme|Mlle|Sr|Sra|Srta)\.?\s+)(?P<value>{_FULL_NAME})"
)
#: Words after a cue that are not a name ("I am Sorry", "Thanks Again").
_NOT_NAMES = frozenset(
    """sorry happy glad unable afraid here writing looking trying calling waiting still not just also very so
    again all team everyone for in the a an and i you we it this that your our my order customer support service
    guten bonjour hola hello hi dear monday tuesday wednesday thursday friday saturday sunday""".split()
)


def _name(value: str) -> bool:
    first = value.split()[0].lower()
    return first not in _NOT_NAMES and len(value) >= 3


_JSON_FIELDS = re.compile(
    r"""(?<![\w-])["']?(?P<key>(?:first|last|full|given|family|middle|sur|customer|user|account|holder|contact)?[_ -]?name|"""
    r"""address(?:[_ -]?line\d?)?|street|street[_ -]?address|address1|address2|city|zip|zip[_ -]?code|post[_ -]?code|"""
    r"""postal[_ -]?code|dob|date[_ -]?of[_ -]?birth|birth[_ -]?date|birthday|ssn|passport(?:[_ -]?number)?|"""
    r"""phone(?:[_ -]?number)?|mobile|email|e-mail)["']?\s*[:=]\s*["'](?P<value>[^"'\n]{2,120})["']""",
    re.IGNORECASE,
)
_FIELD_KIND = (
    (re.compile(r"name", re.I), "[NAME]"),
    (re.compile(r"address|street|city|zip|post", re.I), "[ADDRESS]"),
    (re.compile(r"dob|birth", re.I), "[DATE_OF_BIRTH]"),
    (re.compile(r"ssn", re.I), "[NATIONAL_ID]"),
    (re.compile(r"passport", re.I), "[PASSPORT]"),
    (re.compile(r"phone|mobile", re.I), "[PHONE]"),
    (re.compile(r"mail", re.I), "[EMAIL]"),
)
#: Field values that name no one: product and tool names, placeholders, generic words.
_GENERIC_VALUES = re.compile(r"^(?:\[[A-Z_]+(?:_\d+)?\]|null|none|n/?a|unknown|-|true|false|\d+)$", re.IGNORECASE)


class JsonFieldRecogniser:
    """Values of personal fields in tool results and arguments: ``"first_name": "Mia"``, ``"zip": "94107"``."""

    def find(self, text: str) -> Iterable[Span]:
        if ":" not in text and "=" not in text:
            return
        for match in _JSON_FIELDS.finditer(text):
            key, value = match.group("key"), match.group("value")
            if _GENERIC_VALUES.match(value.strip()) or re.fullmatch(r"[a-z]+(?:_[a-z]+)+", value):
                continue  # "tool_name": "lookup_order" and other identifiers
            if re.search(r"(?:tool|function|product|file|model|prompt|user|account)[_ -]?name", key, re.I):
                continue
            placeholder = next(p for pattern, p in _FIELD_KIND if pattern.search(key))
            yield Span(match.start("value"), match.end("value"), placeholder)


_STREET_WORDS_EN = r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Terrace|Close|Crescent|Square|Sq|Parkway|Pkwy|Highway|Hwy)\b\.?"
_ADDRESS = re.compile(
    # 12 Baker Street / 350 Fifth Ave, Apt 4B, New York, NY 10118
    rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][\w'.-]*\s+){{1,4}}{_STREET_WORDS_EN}"
    rf"(?:,?\s+(?:Apt|Apartment|Suite|Unit|Flat)\.?\s*\w+)?(?:,\s*[A-Z][\w' -]+){{0,2}}(?:,?\s+[A-Z]{{2}})?(?:\s+\d{{5}}(?:-\d{{4}})?)?"
    # Musterstraße 12a, 10115 Berlin / Hauptstr. 5
    r"|\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer)\s+\d{1,4}\s?[a-z]?\b(?:,?\s+\d{5}\s+[A-ZÄÖÜ][\wäöüß-]+)?"
    # 12 rue de la Paix, 75002 Paris / Calle Mayor 5 / Via Roma 10
    r"|\b(?:\d{1,4},?\s+)?(?:rue|avenue|boulevard|bd|place|impasse|chemin|calle|avenida|plaza|paseo|via|viale|piazza|corso)\s+(?:(?:de|du|des|la|le|del|de la|di|della)\s+)?[A-ZÀ-Þ][\wà-ÿ'-]*(?:\s+[A-ZÀ-Þ][\wà-ÿ'-]*){0,2}(?:,?\s+\d{5}\s+[A-ZÀ-Þ][\wà-ÿ'-]+|,?\s+\d{1,4}(?!\d))?"
    # UK postcodes: SW1A 1AA
    r"|\b[A-Z]{1,2}\d[A-Z\d]?\s+\d[A-Z]{2}\b"
)


def _contact_recognisers(names: re.Pattern[str] = _NAME_CUES) -> list[Recogniser]:
    return [
        PhoneRecogniser(),
        IbanRecogniser(),
        JsonFieldRecogniser(),
        RegexRecogniser(_EMAIL_IDN, "[EMAIL]"),
        RegexRecogniser(_EMAIL_SPELLED, "[EMAIL]", confirm=_spelled_email),
        RegexRecogniser(re.compile(r"(?<![\d.])\d{4}(?:[ .-]\d{4}){2,3}(?:[ .-]\d{1,3})?(?![\d])"), "[CARD]", confirm=_card),
        RegexRecogniser(re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])|(?<![\w:])(?=[0-9a-fA-F:]*:[0-9a-fA-F]*:)[0-9a-fA-F:]{2,39}(?![\w:])"), "[IP]", confirm=_ip),
        RegexRecogniser(_DOB, "[DATE_OF_BIRTH]"),
        RegexRecogniser(_PASSPORT, "[PASSPORT]"),
        *[RegexRecogniser(regex, "[NATIONAL_ID]", confirm=valid) for regex, valid in _NATIONAL_IDS],
        RegexRecogniser(names, "[NAME]", confirm=_name),
        RegexRecogniser(_ADDRESS, "[ADDRESS]"),
    ]


class PresidioRecogniser:
    """Names, locations and more from Presidio with an NER model: the optional upgrade of the name and address
    patterns. Needs ``pip install presidio-analyzer`` and a spaCy model (e.g. ``python -m spacy download
    en_core_web_lg``); nightloop never downloads one."""

    ENTITIES = {"PERSON": "[NAME]", "LOCATION": "[ADDRESS]", "NRP": "[NAME]"}

    def __init__(self, language: str = "en", score: float = 0.6) -> None:
        try:
            from presidio_analyzer import AnalyzerEngine
        except ImportError as exc:  # pragma: no cover - optional
            raise ImportError("PresidioRecogniser needs presidio-analyzer: pip install presidio-analyzer") from exc
        self._engine = AnalyzerEngine()
        self._language, self._score = language, score

    def find(self, text: str) -> Iterable[Span]:  # pragma: no cover - needs a model download
        for result in self._engine.analyze(text=text, language=self._language, entities=list(self.ENTITIES)):
            if result.score >= self._score:
                yield Span(result.start, result.end, self.ENTITIES[result.entity_type])


#: What :func:`nightloop.redact.redact` runs after its own patterns.
DEFAULT_RECOGNISERS: tuple[Recogniser, ...] = (*_credential_recognisers(), *_contact_recognisers())
#: The same for the agent's own messages (see ``_NAME_CUES_IN_AGENT_TEXT``).
AGENT_RECOGNISERS: tuple[Recogniser, ...] = (*_credential_recognisers(), *_contact_recognisers(_NAME_CUES_IN_AGENT_TEXT))
