"""Redaction: every pattern has positives and negatives; innocent numbers survive."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightloop.models import Conversation
from nightloop.redact import luhn_valid, redact, redact_conversation, redact_value

POSITIVES = [
    ("write to jane.doe+shop@example.co.uk today", "[EMAIL]", "jane.doe"),
    ("MIA.LI3818@Example.com", "[EMAIL]", "MIA.LI3818"),
    ("card 4111 1111 1111 1111 exp 12/27", "[CARD]", "4111"),
    ("card 5500-0055-5555-5559", "[CARD]", "5500"),
    ("amex 378282246310005", "[CARD]", "378282246310005"),
    ("call +1 (415) 555-0100 now", "[PHONE]", "555-0100"),
    ("call 415-555-0100 now", "[PHONE]", "555-0100"),
    ("call (415) 555 0100 now", "[PHONE]", "555 0100"),
    ("London +44 20 7946 0958", "[PHONE]", "7946"),
    ("Paris +33 6 12 34 56 78", "[PHONE]", "34 56"),
    ("office 020 7946 0958", "[PHONE]", "7946"),
    ("mobile 07700 900123", "[PHONE]", "900123"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "[IBAN]", "3704"),
    ("GB82WEST12345698765432", "[IBAN]", "WEST"),
    ("key sk-proj-abcdefghijklmnopqrstuvwxyz123456", "[SECRET]", "abcdefghij"),
    ("key sk-ant-api03-abcdefghijklmnopqrstuv_XYZ", "[SECRET]", "api03"),
    ("aws AKIAIOSFODNN7EXAMPLE", "[SECRET]", "AKIAIOSFODNN7EXAMPLE"),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[SECRET]", "ghp_"),
    ("slack xoxb-1234567890-abcdefghij", "[SECRET]", "xoxb"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "[SECRET]",
        "eyJ",
    ),
    ("Authorization: Bearer abcdef1234567890abcdef", "Bearer [SECRET]", "abcdef1234"),
    ('{"api_key": "abc123def456ghi"}', '"api_key": "[SECRET]"', "abc123"),
    ("password: hunter2222", "password: [SECRET]", "hunter"),
    ("session_hash=0123456789abcdef0123456789abcdef0123", "session_hash=[SECRET]", "0123456789abcdef"),
    ("build=Xy7Zk9QmP2LrT5VnB8WcD3FgH6JsA1Ee", "build=[SECRET]", "Xy7Zk9"),
]

NEGATIVES = [
    "Where is my order #4412?",
    "It costs $1,234.56 or 1 234,56 € incl. VAT",
    "Delivered on 2026-11-23 at 10:00, or 23/11/2026, or 05 15 2024",
    "Upgrade to version 1.2.3 (v2.10.4, build 20261123)",
    "Use certificate 7504069 and the Visa card ending in 7447",
    "reservation ZFA04Y for user mia_li_3668 on flight HAT170",
    "card 4111 1111 1111 1112 fails the Luhn check",
    "not an IBAN: DE12 3456 7890 1234 5678 90",
    "tokens: 12345678 max_tokens=1024 author=Jane",
    "Observation:\n78886090522101180541172856528278622967320643510",
    "the answer is 1234567890123",
    "the plain number 5551234567",
    "an email-ish user@localhost and a@b",
    "temperature=0.7 top_p=0.95 seed=42",
]


@pytest.mark.parametrize(("text", "expected", "gone"), POSITIVES)
def test_sensitive_text_is_replaced_by_a_typed_placeholder(text: str, expected: str, gone: str) -> None:
    redacted = redact(text)
    assert expected in redacted
    assert gone not in redacted


@pytest.mark.parametrize("text", NEGATIVES)
def test_innocent_numbers_and_words_survive(text: str) -> None:
    assert redact(text) == text


def test_luhn_checksum() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")


def test_surrounding_text_is_kept() -> None:
    assert redact("Hi, I'm jane@example.com, order #4412.") == "Hi, I'm [EMAIL], order #4412."


def test_redact_value_walks_json_like_values() -> None:
    value = {"to": ["jane@example.com", 3], "nested": {"card": "4111111111111111"}, "n": None}
    assert redact_value(value) == {"to": ["[EMAIL]", 3], "nested": {"card": "[CARD]"}, "n": None}


def test_redact_conversation_covers_messages_tool_arguments_variables_and_outcome() -> None:
    conv = Conversation.model_validate(
        {
            "id": "c-1",
            "variables": {"customer_email": "jane@example.com"},
            "messages": [
                {"role": "system", "content": "You help {{ shop }}."},
                {"role": "user", "content": "I am jane@example.com, card 4111 1111 1111 1111"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "t1", "function": {"name": "lookup", "arguments": {"email": "jane@example.com"}}}
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": '{"phone": "+44 20 7946 0958"}'},
            ],
            "outcome": {
                "error": "failed for jane@example.com",
                "feedback": {"score": 0, "comment": "mail jane@example.com"},
            },
        }
    )
    redacted = redact_conversation(conv)
    dumped = redacted.to_jsonl()
    assert "jane@example.com" not in dumped
    assert "4111" not in dumped
    assert "7946" not in dumped
    assert redacted.messages[2].content is None
    assert json.loads(redacted.messages[2].tool_calls[0].function.arguments) == {"email": "[EMAIL]"}
    assert redacted.outcome.feedback.comment == "mail [EMAIL]"
    # The original is untouched: redaction returns a copy.
    assert "jane@example.com" in conv.messages[1].content


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="@:=-+"), max_size=200))
def test_text_without_digits_or_separators_never_changes(text: str) -> None:
    if any(char.isdigit() for char in text):
        return
    assert redact(text) == text


@given(
    st.lists(
        st.sampled_from(
            [
                "jane@example.com",
                "4111 1111 1111 1111",
                "+44 20 7946 0958",
                "order #4412",
                "hello",
                "sk-" + "a" * 24,
                "$12.50",
            ]
        ),
        max_size=8,
    )
)
def test_redaction_is_idempotent(parts: list[str]) -> None:
    once = redact(" ".join(parts))
    assert redact(once) == once


def test_no_email_survives_in_real_conversations_and_ids_do(real_data) -> None:
    leaked, kept_ids = [], 0
    for line in (real_data / "tau_airline.jsonl").read_text(encoding="utf-8").splitlines()[:60]:
        conv = redact_conversation(Conversation.from_jsonl(line))
        text = conv.to_jsonl()
        leaked += [word for word in text.split() if "@example.com" in word]
        kept_ids += text.count("certificate_") + text.count("reservation_id")
    assert leaked == []
    assert kept_ids > 0


@pytest.mark.parametrize(
    ("text", "expected", "gone"),
    [
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic [SECRET]", "dXNlcjpw"),
        ("curl -H 'authorization: token abc123def456'", "authorization: token [SECRET]", "abc123"),
        ("log in with Basic dXNlcjpwYXNzd29yZA== please", "Basic [SECRET] please", "dXNlcjpw"),
        ("iban de89 3704 0044 0532 0130 00", "iban [IBAN]", "3704"),
        ("my iban is gb82 west 1234 5698 7654 32.", "is [IBAN].", "west"),
        ("my password is hunter2!!", "my password is [SECRET]", "hunter2"),
        ("The PIN was 4821, thanks", "The PIN was [SECRET], thanks", "4821"),
        ("password: hunter2", "password: [SECRET]", "hunter2"),
    ],
)
def test_basic_auth_spaced_lowercase_iban_and_spoken_passwords_are_redacted(
    text: str, expected: str, gone: str
) -> None:
    redacted = redact(text)
    assert expected in redacted and gone not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "Basic information about order #4412",
        "I need basic help please",
        "Authorization failed for order 4412 on 2026-11-23",
        "The password is incorrect, and the reset link expired.",
        "my password is not working since 23/11/2026",
        "Order 1234 5678 shipped; the refund of 120.50 EUR lands on 2026-11-30",
        "spin: 360 at 12:30",
        "ab12 3456 7890 1234 is a ticket, not an IBAN",
    ],
)
def test_new_secret_and_iban_patterns_leave_innocent_text_alone(text: str) -> None:
    assert redact(text) == text
