"""Personal data redaction by patterns: emails, phones, cards, IBANs, IPs, secret URLs, IDs,
street addresses and labelled dates of birth.

Used by dataset curation (``chatbot data build``, where ``training.data.redact`` adds names from a
NER model) and by the chat engine's output filter, which runs on every partial answer, so it
imports nothing from ``training`` and nothing heavy: regexes find candidates, checksums from
python-stdnum and phonenumbers' parser decide.

    >>> scrub("mail me at ana@example.org")
    ('mail me at <EMAIL>', Counter({'EMAIL': 1}))
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Callable, Iterable, Sequence
from urllib.parse import parse_qsl, urlsplit

import phonenumbers
from stdnum import iban, luhn
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import pan
from stdnum.it import codicefiscale
from stdnum.us import ssn

from chatbot.pii_address import ZIP_LABEL_BEFORE, might_hold_address, scrub_addresses

# Order matters: a URL may hold an email or an IP, an IBAN holds digits a card or phone
# pattern would also see, so the more specific kinds go first.
KINDS = ("URL", "EMAIL", "IBAN", "CARD", "IP", "ID", "DOB", "PHONE", "ADDRESS")
# Countries tried, after the configured one, for numbers written without "+CC": a number is
# redacted if any of them reads it (see _phone_spans).
PHONE_REGIONS = ("GB", "DE", "FR", "ES", "IT", "NL", "IE", "IN", "AU")

_URL = re.compile(r"\b(?:https?|ftp|wss?)://[^\s<>\"'`]+", re.IGNORECASE)
_SECRET_PARAMS = re.compile(
    r"^(?:.*[_-])?(?:token|key|apikey|secret|password|passwd|pwd|sig|signature|auth|"
    r"authorization|credential|credentials|session|sessionid|sid|jwt|code)$", re.IGNORECASE)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# An address written to dodge harvesters: "dana.k [at] example.com", "dana.k(at)example(dot)com",
# "dana.k @ example.com", "dana dot k at example dot com". A plain " at " counts only with a
# spelled "dot" (see _is_spelled_email): "look at example.com" is no address.
_SPELLED_AT = r"\s*[\[({<]\s*at\s*[\])}>]\s*|\s*@\s*|\s+at\s+"
_SPELLED_DOT = r"\.|\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+"
_EMAIL_SPELLED = re.compile(
    rf"\b[A-Za-z0-9_%+-]+(?:(?:{_SPELLED_DOT})[A-Za-z0-9_%+-]+)*(?P<at>{_SPELLED_AT})"
    rf"[A-Za-z0-9-]+(?:(?:{_SPELLED_DOT})[A-Za-z0-9-]+)*(?P<dot>{_SPELLED_DOT})[A-Za-z]{{2,}}\b",
    re.IGNORECASE)
_EMAIL_SPELLED_HINT = re.compile(r"[\[({<]\s*at\s*[\])}>]|\bdot\b|\s@|@\s", re.IGNORECASE)
_SPELLED_DOT_WORD = re.compile(r"[\[({<\s]dot[\])}>\s]", re.IGNORECASE)
# Words no one's address is made of: "meet me at the dot com office" is no "me@the.com".
_FUNCTION_WORDS = frozenset(
    "a an the this that these those my your our their his her its me you him us them it "
    "some any every each no".split())
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?\b",
                   re.IGNORECASE)
# A full stop after a number ends the sentence; only ".<digit>" would continue the number.
_CARD = re.compile(r"(?<!\d)(?<!\d\.)\d(?:[ .-]?\d){12,18}(?!\d|\.\d)")
_IPV4 = re.compile(r"(?<!\w)(?<!\w\.)(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# A dotted quad right after "v", "version", "release" or "patch" is a version number, not an
# address.
_VERSION_BEFORE = re.compile(r"(?:\bv|\bversion|\brelease|\bver\.?|\bbuild|\bpatch)\s*$",
                             re.IGNORECASE)
_ID_LABELLED = re.compile(
    r"\b(?P<label>ssn|social security(?: number| no\.?)?|passport(?: number| no\.?)?|"
    r"national id(?: number)?|id number|id card(?: number)?|tax id|personal id(?: number)?|"
    r"national insurance(?: number| no\.?)?|ni number|nino|permanent account number|"
    r"pan card(?: number| no\.?)?|pan (?:number|no\.?)|(?-i:PAN)|"
    r"driver'?s licen[cs]e(?: number)?)(?P<sep>\s*(?:is|:|#|no\.?)?\s*)"
    # a NI number in any case and grouping ("qq 12 34 56 c"), or digits with letters around,
    # grouped by spaces, dashes or dots ("536 - 90 - 4399", "536.90.4399")
    r"(?P<value>[A-Z]{2}(?:[ -]?\d\d){3}[ -]?[A-D]|[A-Z]{0,3}\d(?: ?[-.]? ?\d){3,16}[A-Z]?"
    r"|[A-Z]{5}\d{4}[A-Z])\b",  # and an Indian PAN
    re.IGNORECASE)
_ID_SHAPED = re.compile(
    r"\b(?:\d{3}-\d{2}-\d{4}|[XYZ]?\d{7,8}[A-Z]|[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]"
    r"|[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2}|[A-Z]{5}\d{4}[A-Z])\b")
_NATIONAL_IDS = (ssn, dni, nie, codicefiscale, nir, pan)
# A UK National Insurance number: two letters, six digits (often in pairs), a final A-D; in
# capitals, grouped by spaces or dashes, or written together in any case ("ab123456c").
_NINO = re.compile(r"\b(?:[A-Z]{2}(?:[ -]?\d\d){3}[ -]?[A-D]|[A-Za-z]{2}\d{6}[A-Da-d])\b")
# Cheap hints that decide which full scans run (see _hints).
_LONG_DIGITS = re.compile(r"\d(?:[\s().\-/]{0,3}\d){6,}")
_CODICE_HINT = re.compile(r"[A-Z]{6}\d\d|[A-Z]{5}\d{4}[A-Z]")  # a codice fiscale, a PAN
_IP_HINT = re.compile(r"\d\.\d{1,3}\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:")
_ID_LABEL_WORDS = ("ssn", "social security", "passport", "licen", "national insurance",
                   "nino", "ni number", "permanent account")
_ID_WORD = re.compile(r"\b(?:id|pan)\b")
# A run of at least 7 digits with only phone punctuation between them on one line, parentheses
# in pairs, up to a list marker such as " 2)", not part of a code such as "INV-2024-000183":
# the only places phonenumbers' (slower) matcher is asked to look.
_PHONE_CANDIDATE = re.compile(
    r"(?<![A-Za-z\d])(?<![A-Za-z]-)\+?(?:\(\d{1,5}\)|\d)"
    r"(?:[ \t.\-/]{0,3}(?:(?<=[ \t])(?!\d{1,2}\))|(?<![ \t]))(?:\(\d{1,5}\)|\d)){6,}")
_DIGIT_GROUPS = re.compile(r"\d+")
_DATE_SHAPED = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_YEAR = r"(?:\d{4}|'?\d\d)\b"  # "1987", "87", "'87"
_DOB = re.compile(
    r"(?P<label>\b(?:born|date of birth|birth ?date|birthday|d\.?o\.?b\b\.?|"
    # German, French, Italian and Spanish: "geb. 03.04.1985", "née le 3/4/1985"
    # (words that are others' too, "NATO 2024", only with the word that follows them)
    r"geb\.|geboren|geburtsdatum|née? (?:le|en)|date de naissance|nat[oa] (?:il|nel)|"
    r"data di nascita|nacid[oa] (?:el|en)|"
    r"fecha de nacimiento)"
    r"(?:\s*(?:[:-]|\b(?:is|was|on|in|the|of|am)\b))*\s*)"
    rf"(?P<value>\d{{1,2}}(?P<sep>[./-])\d{{1,2}}(?P=sep)(?:\d{{4}}|\d{{2}})\b|\d{{4}}-\d\d-\d\d\b"
    rf"|{_DAY}(?:\s+of)?\s+{_MONTH},?(?:\s+{_YEAR})?|{_MONTH}\s+{_DAY}\b(?:,?\s+{_YEAR})?"
    rf"|(?:{_MONTH}\s+)?(?:19|20)\d\d\b)", re.IGNORECASE)
_DOB_WORDS = ("born", "birth", "dob", "d.o.b", "geb", "née", "né ", "naissance", "nato", "nata",
              "nascita", "nacid", "nacimiento")
def scrub(text: str, kinds: Iterable[str] = KINDS, region: str = "US",
          regions: Sequence[str] = PHONE_REGIONS) -> tuple[str, Counter]:
    """``text`` with every span of ``kinds`` replaced by ``<KIND>``, and the count per kind.

    ``region`` is the country phonenumbers tries first for numbers written without ``+CC``,
    then each of ``regions``.
    """
    counts: Counter = Counter()
    wanted = set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kind(s) {sorted(unknown)}; known kinds: {', '.join(KINDS)}")
    hints = _hints(text)
    for kind in KINDS:
        if kind in wanted and kind in hints:
            text, found = _SCRUBBERS[kind](text, (region, *regions))
            if found:
                counts[kind] += found
    return text, counts


def _hints(text: str) -> set[str]:
    """The kinds worth a full scan: most text has no '@', no '://' and no long digit run."""
    hints = set()
    if "://" in text:
        hints.add("URL")
    if "@" in text or _EMAIL_SPELLED_HINT.search(text):
        hints.add("EMAIL")
    if _LONG_DIGITS.search(text):
        hints.update(("IBAN", "CARD", "ID", "PHONE"))
    elif _CODICE_HINT.search(text) or _NINO.search(text) or _has_id_label(text):
        hints.add("ID")
    if _IP_HINT.search(text):
        hints.add("IP")
    lowered = text.lower()
    if might_hold_address(text, lowered):
        hints.add("ADDRESS")
    if any(word in lowered for word in _DOB_WORDS):
        hints.add("DOB")
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


def _url(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
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


def _email(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
    text, found = _replace(_EMAIL, lambda m: True, "<EMAIL>", text) if "@" in text else (text, 0)
    if not _EMAIL_SPELLED_HINT.search(text):
        return text, found
    text, spelled = _replace(_EMAIL_SPELLED, _is_spelled_email, "<EMAIL>", text)
    return text, found + spelled


def _is_spelled_email(match: re.Match) -> bool:
    """A bracketed "[at]" or an "@" always; a plain " at " when a "dot" is spelled out too and
    the words on either side of it are no function words ("me at the dot com office")."""
    if match.group("at").strip().lower() != "at":
        return True
    text = match.string
    word_before = text[match.start():match.start("at")].split()[-1].lower()
    word_after = text[match.end("at"):match.end()].split()[0].lower()
    return (bool(_SPELLED_DOT_WORD.search(match.group(0)))
            and not {word_before, word_after} & _FUNCTION_WORDS)


def _iban(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
    return _replace(_IBAN, lambda m: iban.is_valid(m.group(0)), "<IBAN>", text)


def _card(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
    def is_card(match: re.Match) -> bool:
        digits = re.sub(r"\D", "", match.group(0))
        return 13 <= len(digits) <= 19 and luhn.is_valid(digits)

    return _replace(_CARD, is_card, "<CARD>", text)


def _ip(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
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


def _national_id(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
    labelled = 0

    def sub_labelled(match: re.Match) -> str:
        nonlocal labelled
        labelled += 1
        return match.group("label") + match.group("sep") + "<ID>"

    if _has_id_label(text):
        text = _ID_LABELLED.sub(sub_labelled, text)
    text, shaped = _replace(_ID_SHAPED, lambda m: _valid_national_id(m.group(0)), "<ID>", text)
    text, nino = _replace(_NINO, lambda m: True, "<ID>", text)
    return text, labelled + shaped + nino


def _has_id_label(text: str) -> bool:
    lowered = text.lower()
    if any(word in lowered for word in _ID_LABEL_WORDS):
        return True
    return ("id" in lowered or "pan" in lowered) and _ID_WORD.search(lowered) is not None


def _valid_national_id(candidate: str) -> bool:
    return any(module.is_valid(candidate) for module in _NATIONAL_IDS)


def _phone(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
    found = 0
    pieces, last = [], 0
    for candidate in _PHONE_CANDIDATE.finditer(text):
        start = max(candidate.start() - 1, last)  # keep a "+" or "(" just before the run
        if (_VERSION_BEFORE.search(text, 0, candidate.start())
                or ZIP_LABEL_BEFORE.search(text, 0, candidate.start())):
            continue
        for begin, end in _phone_spans(text[start:candidate.end()], regions):
            pieces.append(text[last:start + begin] + "<PHONE>")
            last = start + end
            found += 1
    pieces.append(text[last:])
    return "".join(pieces), found


def _phone_spans(window: str, regions: tuple[str, ...]) -> list[tuple[int, int]]:
    """The numbers in ``window`` as the first of ``regions`` that reads any of them sees them.

    A number is one if it is valid there, or if it is possible there and grouped the way that
    region writes its numbers ("555-123-4567", "07700 900123": well-formed but unassigned), or
    possible with an explicit "+CC". Over-redaction beats a leak.
    """
    for region in dict.fromkeys(regions):
        spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(
            window, region, leniency=phonenumbers.Leniency.VALID)
            if not _DATE_SHAPED.fullmatch(m.raw_string)]  # "03.04.2025" is a date
        spans = spans or [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(
            window, region, leniency=phonenumbers.Leniency.POSSIBLE) if _well_formed(m)]
        if spans:
            return spans
    return []


def _well_formed(match: phonenumbers.PhoneNumberMatch) -> bool:
    raw = match.raw_string
    if raw.startswith("+"):
        return True
    groups = _DIGIT_GROUPS.findall(raw)
    national = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return (len(groups) > 1 and not _DATE_SHAPED.fullmatch(raw)
            and groups == _DIGIT_GROUPS.findall(national))


def _date_of_birth(text: str, regions: tuple[str, ...]) -> tuple[str, int]:
    found = 0

    def sub(match: re.Match) -> str:
        nonlocal found
        found += 1
        return match.group("label") + "<DOB>"

    return _DOB.sub(sub, text), found


_SCRUBBERS: dict[str, Callable[[str, tuple[str, ...]], tuple[str, int]]] = {
    "URL": _url, "EMAIL": _email, "IBAN": _iban, "CARD": _card, "IP": _ip,
    "ID": _national_id, "PHONE": _phone, "ADDRESS": lambda text, regions: scrub_addresses(text),
    "DOB": _date_of_birth,
}
