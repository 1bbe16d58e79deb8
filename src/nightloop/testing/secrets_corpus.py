"""Planted secrets and personal data, one entry per kind real conversations contain (for tests and benchmarks).

Each :class:`Planted` is a value and the sentence a customer or a tool would carry it in. The values are
fictional or published test values (Stripe's and AWS's documentation keys, ISO example IBANs, checksum-valid
but unassigned ids).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PLANTED", "Planted"]


@dataclass(frozen=True)
class Planted:
    kind: str
    value: str
    text: str
    #: Where it is planted: "user", "tool" (a tool result), "id" (the conversation id).
    where: str = "user"


def _p(kind: str, value: str, template: str, where: str = "user") -> Planted:
    return Planted(kind, value, template.format(v=value), where)


PLANTED: tuple[Planted, ...] = (
    _p("person name", "Margarethe Oyelaran-Whitcombe", "Hi, my name is {v} and my parcel is late."),
    _p("person name", "Dmitri Vasquez-Holloway", "Thanks for nothing. Regards, {v}"),
    _p("person name", "Ilse Brandtner", '{{"customer": {{"first_name": "Ilse", "last_name": "Brandtner"}}, "first_name": "Ilse", "full_name": "{v}"}}', "tool"),
    _p("street address", "742 Evergreen Terrace", "Please ship it to {v}, Springfield, OR 97403."),
    _p("street address", "Lindenstraße 42", "Meine Adresse ist {v}, 10115 Berlin."),
    _p("street address", "12 rue de la Paix", "Livrez au {v}, 75002 Paris."),
    _p("SSN", "536-90-4399", "My SSN is {v}, do you need it?"),
    _p("NINO", "JG 10 37 59 A", "National Insurance number {v} for the invoice."),
    _p("DNI", "12345678Z", "Mi DNI es {v}."),
    _p("passport number", "X7Q4829K1", "My passport number is {v}."),
    _p("IP address", "203.0.113.77", "I ordered from IP {v} yesterday."),
    _p("IP address", "2001:db8:85a3::8a2e:370:7334", '{{"client_ip": "{v}"}}', "tool"),
    _p("date of birth", "14/03/1987", "For verification: date of birth {v}."),
    _p("date of birth", "March 14, 1987", "I was born on {v}."),
    _p("IDN email", "jürgen.müller@bücher.de", "Schreiben Sie an {v} bitte."),
    _p("obfuscated email", "anna.kowalczyk (at) gmail (dot) com", "reach me at {v} please"),
    _p("obfuscated email", "t.okafor[at]proton[dot]me", "my mail is {v}"),
    _p("phone without separators", "+4915112345678", "Ruf mich an: {v}"),
    _p("phone without separators", "4155552671", "call me at {v} after 5"),
    _p("phone without separators", "07700900123", "my mobile is {v}"),
    _p("card with dots", "4111.1111.1111.1111", "card {v} exp 12/27"),
    _p("IBAN with dashes", "DE89-3704-0044-0532-0130-00", "IBAN {v} for the refund"),
    _p("IBAN with dashes", "GB82-WEST-1234-5698-7654-32", "refund to {v} please"),
    _p("AWS secret in prose", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "our aws secret key is {v} (sorry)"),
    _p("Stripe key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "the integration uses {v}"),
    _p("Stripe key", "rk_live_51H8xQ2eZvKYlo2C0aBcDeFgHiJ", "restricted key {v}"),
    _p("Google API key", "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "maps key {v}"),
    _p("Hugging Face token", "hf_jTqXbWvYzKpLmNoRsTuVwXyZaBcDeFgHiJ", "my HF token {v}"),
    _p("Slack webhook", "https://hooks.slack.com/services/T024BE7LD/B08ABCDEF12/a1b2c3d4e5f6g7h8i9j0k1l2", "post alerts to {v}"),
    _p(
        "PEM private key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi\n-----END RSA PRIVATE KEY-----",
        "the key file says:\n{v}\nhelp",
        "tool",
    ),
    _p("password in prose", "Tr0ub4dor&3", "my password is {v} can you check my account"),
    _p("password in German", "Sommer2024!", "Mein Passwort ist {v}, bitte helfen Sie."),
    _p("email in conversation id", "lena.fischer@example.org", "c-{v}-0007", "id"),
    _p("email", "mia.li.3818@example.com", "write to {v}"),
    _p("phone", "+44 20 7946 0958", "London office {v}"),
    _p("card", "5500 0055 5555 5559", "card {v}"),
)
