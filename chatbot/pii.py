"""Personal data redaction: replace emails, phones, cards, IBANs, IPs, secret URLs and IDs.

Used by dataset curation (``chatbot data build``) and meant to be reused by the chat engine's
output filter, so it imports nothing from ``training`` and nothing heavy: regexes find
candidates, checksums from python-stdnum and phonenumbers' parser decide.

    >>> scrub("mail me at ana@example.org")
    ('mail me at <EMAIL>', Counter({'EMAIL': 1}))
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

import phonenumbers
from stdnum import iban, luhn
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.us import ssn

# Order matters: a URL may hold an email or an IP, an IBAN holds digits a card or phone
# pattern would also see, so the more specific kinds go first.
KINDS = ("URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "PHONE")

_URL = re.compile(r"\b(?:https?|ftp|wss?)://[^\s<>\"'`]+", re.IGNORECASE)
_SECRET_PARAMS = re.compile(
    r"^(?:.*[_-])?(?:token|key|apikey|secret|password|passwd|pwd|sig|signature|auth|"
    r"authorization|credential|credentials|session|sessionid|sid|jwt|code)$", re.IGNORECASE)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# A dotted quad right after "v", "version" or "release" is a version number, not an address.
_VERSION_BEFORE = re.compile(r"(?:\bv|\bversion|\brelease|\bver\.?|\bbuild)\s*$", re.IGNORECASE)
_ID_LABELLED = re.compile(
    r"\b(?P<label>ssn|social security(?: number| no\.?)?|passport(?: number| no\.?)?|"
    r"national id(?: number)?|id number|id card(?: number)?|tax id|personal id(?: number)?|"
    r"driver'?s licen[cs]e(?: number)?)(?P<sep>\s*(?:is|:|#|no\.?)?\s*)"
    r"(?P<value>[A-Z]{0,3}\d(?:[ -]?\d){3,16}[A-Z]?)\b", re.IGNORECASE)
_ID_SHAPED = re.compile(
    r"\b(?:\d{3}-\d{2}-\d{4}|[XYZ]?\d{7,8}[A-Z]|[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]"
    r"|[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2})\b")
_NATIONAL_IDS = (ssn, dni, nie, codicefiscale, nir)
# Cheap hints that decide which full scans run (see _hints).
_LONG_DIGITS = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6,}")
_CODICE_HINT = re.compile(r"[A-Z]{6}\d\d")
_IP_HINT = re.compile(r"\d\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:")
_ID_LABEL_WORDS = ("ssn", "social security", "passport", "licen")
_ID_WORD = re.compile(r"\bid\b")
# A run of at least 7 digits with only phone punctuation between them: the only places
# phonenumbers' (slower) matcher is asked to look.
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d(?:[\s().\-/]{0,3}\d){6,}")


def scrub(text: str, kinds: Iterable[str] = KINDS,
          region: str = "US") -> tuple[str, Counter]:
    """``text`` with every span of ``kinds`` replaced by ``<KIND>``, and the count per kind.

    ``region`` is the country phonenumbers assumes for numbers written without ``+CC``.
    """
    counts: Counter = Counter()
    wanted = set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kind(s) {sorted(unknown)}; known kinds: {', '.join(KINDS)}")
    hints = _hints(text)
    for kind in KINDS:
        if kind in wanted and kind in hints:
            text, found = _SCRUBBERS[kind](text, region)
            if found:
                counts[kind] += found
    return text, counts


def _hints(text: str) -> set[str]:
    """The kinds worth a full scan: most text has no '@', no '://' and no long digit run."""
    hints = set()
    if "://" in text:
        hints.add("URL")
    if "@" in text:
        hints.add("EMAIL")
    if _LONG_DIGITS.search(text):
        hints.update(("IBAN", "CARD", "ID", "PHONE"))
    elif _CODICE_HINT.search(text) or _has_id_label(text):
        hints.add("ID")
    if _IP_HINT.search(text):
        hints.add("IP")
    return hints


def _replace(pattern: re.Pattern, keep: Callable[[re.Match], bool], placeholder: str,
             text: str) -> tuple[str, int]:
    """Replace the matches of ``pattern`` that ``keep`` accepts; return the text and count."""
    found = 0

    def sub(match: re.Match) -> str:
        nonlocal found
        if not keep(match):
            return match.group(0)
        found += 1
        return placeholder

    return pattern.sub(sub, text), found


def _url(text: str, region: str) -> tuple[str, int]:
    if "://" not in text:
        return text, 0
    return _replace(_URL, lambda m: _url_has_secret(m.group(0)), "<URL>", text)


def _url_has_secret(url: str) -> bool:
    """Credentials in the authority, or a query/fragment parameter named like a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if "@" in parts.netloc:
        return True
    for field in (parts.query, parts.fragment):
        for name, value in parse_qsl(field, keep_blank_values=True):
            if value and _SECRET_PARAMS.match(name):
                return True
    return False


def _email(text: str, region: str) -> tuple[str, int]:
    if "@" not in text:
        return text, 0
    return _replace(_EMAIL, lambda m: True, "<EMAIL>", text)


def _iban(text: str, region: str) -> tuple[str, int]:
    return _replace(_IBAN, lambda m: iban.is_valid(m.group(0)), "<IBAN>", text)


def _card(text: str, region: str) -> tuple[str, int]:
    def is_card(match: re.Match) -> bool:
        digits = re.sub(r"\D", "", match.group(0))
        return 13 <= len(digits) <= 19 and luhn.is_valid(digits)

    return _replace(_CARD, is_card, "<CARD>", text)


def _ip(text: str, region: str) -> tuple[str, int]:
    def is_ipv4(match: re.Match) -> bool:
        if _VERSION_BEFORE.search(text, 0, match.start()):
            return False
        return _parses_as_ip(match.group(0))

    text, found4 = _replace(_IPV4, is_ipv4, "<IP>", text) if "." in text else (text, 0)
    if text.count(":") < 2:
        return text, found4
    text, found6 = _replace(_IPV6, lambda m: m.group(0).count(":") >= 2
                            and _parses_as_ip(m.group(0)), "<IP>", text)
    return text, found4 + found6


def _parses_as_ip(candidate: str) -> bool:
    """A valid address that can point at someone (not 127.0.0.1, 0.0.0.0, ::1, multicast)."""
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified or address.is_multicast)


def _national_id(text: str, region: str) -> tuple[str, int]:
    labelled = 0

    def sub_labelled(match: re.Match) -> str:
        nonlocal labelled
        labelled += 1
        return match.group("label") + match.group("sep") + "<ID>"

    if _has_id_label(text):
        text = _ID_LABELLED.sub(sub_labelled, text)
    text, shaped = _replace(_ID_SHAPED, lambda m: _valid_national_id(m.group(0)), "<ID>", text)
    return text, labelled + shaped


def _has_id_label(text: str) -> bool:
    lowered = text.lower()
    if any(word in lowered for word in _ID_LABEL_WORDS):
        return True
    return "id" in lowered and _ID_WORD.search(lowered) is not None


def _valid_national_id(candidate: str) -> bool:
    return any(module.is_valid(candidate) for module in _NATIONAL_IDS)


def _phone(text: str, region: str) -> tuple[str, int]:
    found = 0
    pieces, last = [], 0
    for candidate in _PHONE_CANDIDATE.finditer(text):
        start = max(candidate.start() - 1, last)  # keep a "+" or "(" just before the run
        for match in phonenumbers.PhoneNumberMatcher(
                text[start:candidate.end()], region, leniency=phonenumbers.Leniency.VALID):
            pieces.append(text[last:start + match.start] + "<PHONE>")
            last = start + match.end
            found += 1
    pieces.append(text[last:])
    return "".join(pieces), found


_SCRUBBERS: dict[str, Callable[[str, str], tuple[str, int]]] = {
    "URL": _url, "EMAIL": _email, "IBAN": _iban, "CARD": _card, "IP": _ip,
    "ID": _national_id, "PHONE": _phone,
}
