"""PII redaction: every kind found where it is, and left alone where it only looks alike."""

from __future__ import annotations

from collections import Counter

import pytest

from chatbot.pii import KINDS, scrub

FOUND = [
    ("EMAIL", "write to dana.k@example.com today", "write to <EMAIL> today"),
    ("EMAIL", "Cc: first.last+tag@mail.example.co.uk.", "Cc: <EMAIL>."),
    ("PHONE", "call (415) 555-2671 after 5", "call <PHONE> after 5"),
    ("PHONE", "office +44 20 7946 0958, ask for Sam", "office <PHONE>, ask for Sam"),
    ("PHONE", "Tel. +49 30 901820", "Tel. <PHONE>"),
    ("CARD", "card 4111 1111 1111 1111 expires soon", "card <CARD> expires soon"),
    ("CARD", "paid with 5500-0000-0000-0004", "paid with <CARD>"),
    ("IBAN", "IBAN DE89 3704 0044 0532 0130 00 please", "IBAN <IBAN> please"),
    ("IBAN", "to GB82WEST12345698765432", "to <IBAN>"),
    ("IP", "the server at 192.168.1.20 is down", "the server at <IP> is down"),
    ("IP", "from 203.0.113.9, then fe80::1ff:fe23:4567:890a", "from <IP>, then <IP>"),
    ("URL", "see https://user:s3cret@git.example.com/repo.git", "see <URL>"),
    ("URL", "https://example.com/reset?token=abc123&x=1 worked", "<URL> worked"),
    ("URL", "https://api.example.com/v1?api_key=XYZ", "<URL>"),
    ("ID", "my SSN is 536-90-4399.", "my SSN is <ID>."),
    ("ID", "passport number: X1234567", "passport number: <ID>"),
    ("ID", "DNI 12345678Z and codice RSSMRA85T10A562S", "DNI <ID> and codice <ID>"),
]

NOT_FOUND = [
    ("PHONE", "upgrade from v2.10.3 to version 1.2.3.4"),  # versions are not phone numbers
    ("PHONE", "release 2026.11.21 is out; 12:30:45 UTC"),
    ("PHONE", "we indexed 1,234,567 chunks"),
    ("CARD", "order 4111111111111112 shipped"),  # 16 digits failing Luhn: an order id
    ("CARD", "invoice 1234-5678-9012-3456"),
    ("IBAN", "IBAN DE89 3704 0044 0532 0130 01"),  # checksum fails
    ("IBAN", "model GB12ABCD"),
    ("IP", "version 1.2.3.4 fixed it"),
    ("IP", "open http://127.0.0.1:7860 or bind 0.0.0.0"),  # loopback / any address
    ("IP", "std::cout and 999.1.1.1"),
    ("URL", "read https://example.com/docs/install?page=2#linux"),
    ("EMAIL", "the @ sign and user@localhost"),
    ("ID", "the id field is 12 characters; see section 123-45"),
    ("ID", "ticket 000-12-3456 closed"),  # SSN-shaped but not a valid number, no label
]


@pytest.mark.parametrize("kind, text, expected", FOUND)
def test_each_kind_is_replaced_by_its_placeholder(kind, text, expected):
    redacted, counts = scrub(text)
    assert redacted == expected
    assert set(counts) == {kind} and counts[kind] == expected.count(f"<{kind}>")


@pytest.mark.parametrize("kind, text", NOT_FOUND)
def test_lookalikes_are_left_alone(kind, text):
    assert scrub(text) == (text, Counter())


def test_only_the_requested_kinds_are_scrubbed():
    text = "mail a@example.org or call +44 20 7946 0958"
    assert scrub(text, kinds=["EMAIL"]) == ("mail <EMAIL> or call +44 20 7946 0958",
                                            Counter(EMAIL=1))


def test_region_decides_numbers_without_country_code():
    assert scrub("ring 030 901820", region="DE")[0] == "ring <PHONE>"
    assert scrub("ring 030 901820", region="US")[0] == "ring 030 901820"


def test_unknown_kind_is_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown PII kind"):
        scrub("x", kinds=["SSN"])
    assert KINDS == ("URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "PHONE")


def test_the_module_imports_nothing_from_training():
    import ast
    from pathlib import Path

    import chatbot.pii as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    assert not any(name and name.startswith(("training", "chatbot")) for name in imported)
