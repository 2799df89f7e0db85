"""Street addresses and postcodes for ``chatbot.pii``: the ``<ADDRESS>`` kind.

Capitalised street addresses with their city and postcode ("12 Baker Street, London NW1 6XE"),
postcodes alone, a street address or a ZIP code in lower case where words before it say one
follows ("i live at 12 baker street", "zip 62704"). Regexes only: the chat filter runs them on
every partial answer.

    >>> scrub_addresses("ship to zip code 62704")
    ('ship to zip code <ADDRESS>', 1)
"""

from __future__ import annotations

import re

_STREET_TYPE = (r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|"
                r"Place|Pl|Square|Sq|Terrace|Close|Crescent|Gardens|Parkway|Pkwy|Highway|Hwy|"
                r"Row|Mews|Walk|Grove)\b\.?(?: (?:NW|NE|SW|SE|N|S|E|W)\b)?")
_UK_POSTCODE_AREAS = (
    "AB|AL|BA|BB|BD|BH|BL|BN|BR|BS|BT|B|CA|CB|CF|CH|CM|CO|CR|CT|CV|CW|DA|DD|DE|DG|DH|DL|DN|DT|DY|"
    "EC|EH|EN|EX|E|FK|FY|GL|GU|GY|G|HA|HD|HG|HP|HR|HS|HU|HX|IG|IM|IP|IV|JE|KA|KT|KW|KY|LA|LD|LE|"
    "LL|LN|LS|LU|L|ME|MK|ML|M|NE|NG|NN|NP|NR|NW|N|OL|OX|PA|PE|PH|PL|PO|PR|RG|RH|RM|SA|SE|SG|SK|SL|"
    "SM|SN|SO|SP|SR|SS|ST|SW|SY|S|TA|TD|TF|TN|TQ|TR|TS|TW|UB|WA|WC|WD|WF|WN|WR|WS|WV|W|YO|ZE")
# In capitals any letters; in lower case ("nw1 6xe") only a real postcode area's, since lower
# case words and numbers meet in ordinary text.
_UK_POSTCODE = (r"(?:\b(?:[A-Z]{1,2}\d[A-Z\d]?|GIR) ?\d[A-Z]{2}\b"
                rf"|(?i:\b(?:{_UK_POSTCODE_AREAS})\d[a-z\d]? ?\d[a-z]{{2}}\b))")
_US_STATE = ("(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|"
             "MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY)")
_CITY = r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+(?:[ -][A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+){0,2}"  # "München" too
_AU_STATE = "(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)"
_SUFFIX_STREETS = "straße|strasse|weg|gasse|platz|allee|straat|gracht|laan"  # "Hauptstraße 5"
_NUMBER_FIRST_STREETS = "rue|avenue|boulevard|place|chemin|allée|quai"  # "15 rue de Rivoli"
_PREFIX_STREETS = ("Via ", "Viale ", "Piazza ", "Calle ", "Carrer ", "Avenida ", "Rua ")
_STREET = (
    # "Flat 2, 12 Baker Street", "1600 Pennsylvania Avenue NW", "221B Baker St."
    r"(?:\b(?:Flat|Apartment|Apt|Unit|Suite)\.? ?\w{1,5},? )?"
    r"\b\d{1,5}[A-Za-z]?(?:-\d{1,5})?,? (?:(?:[A-Z][\w'’.-]*|\d+(?:st|nd|rd|th)) ){1,4}"
    + _STREET_TYPE
    + rf"|\b[A-Z][\w'’-]*(?:{_SUFFIX_STREETS}) \d{{1,4}}[a-z]?\b"
    + rf"|\b\d{{1,4}},? (?i:{_NUMBER_FIRST_STREETS}) (?:[\w'’-]+ ){{0,3}}[A-Z][\w'’-]*"
    + rf"|\b(?:{'|'.join(_PREFIX_STREETS)})(?:[\w'’-]+ ){{0,3}}[A-Z][\w'’-]*,? \d{{1,4}}\b"
    + r"|\bP\.? ?O\.? Box \d+")
_ADDRESS = re.compile(
    rf"(?:{_STREET})"
    # then the unit, city, state and postal code that follow it, where they do
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor)\.? ?#?\w{1,5})?"
    rf"(?:,? (?:\d{{4,5}} )?{_CITY})?"
    rf"(?:,? (?:{_US_STATE} \d{{5}}(?:-\d{{4}})?\b|{_AU_STATE} \d{{4}}\b|{_UK_POSTCODE}"
    r"|\d{5}\b))?"
    # a postcode alone, or a US city, state and ZIP code
    rf"|{_UK_POSTCODE}|\b{_CITY}, {_US_STATE} \d{{5}}(?:-\d{{4}})?\b")
# A street address typed in any case ("i live at 12 baker street"), where words before it say
# an address follows: lower-case numbers and words meet too often in ordinary text without them.
_ADDRESS_CUES = ("live", "living", "staying", "moved", "ship", "send", "sent", "deliver",
                 "post", "mail", "located", "address")
_SENT_TO = (r"(?:moved|ship(?:ped)?|sen[dt]|deliver(?:ed)?|post(?:ed)?|mail(?:ed)?)"
            r"(?: it| them)? to")
_CUED_ADDRESS = re.compile(
    rf"(?P<cue>\b(?:(?:live[sd]?|living|staying|located) at|{_SENT_TO}|address(?: is)?:?) )"
    r"(?P<value>(?:(?:flat|apartment|apt|unit|suite)\.? ?\w{1,5},? )?"  # "flat 3, 14 high st"
    r"\d{1,5}[a-z]?,? (?:(?!(?:a|an|and|at|by|for|in|of|on|the|to|with) )"
    r"[a-z][\w'’-]* ){1,3}"
    r"(?:street|st|road|rd|avenue|ave|lane|drive|boulevard|terrace|crescent|gardens|parkway|"
    r"highway|mews)\b\.?)", re.IGNORECASE)
# The cheap hint for _ADDRESS (besides _PREFIX_STREETS), anchored on a digit so the regex engine
# skips to digits: a number before a capitalised word or a street word ("12 Baker", "15 rue"),
# after a street word ("Hauptstraße 5", "Box 12"), or in a postcode ("NW1 6XE", "IL 62704").
_ADDRESS_HINT = re.compile(
    r"\d(?:" + "|".join(f"(?<={word} \\d)" for word in (*_SUFFIX_STREETS.split("|"), "Box"))
    + r"|(?<=[A-Z]{2} \d)\d{4}|(?i:(?<=[a-z]\d)[a-z\d]? ?\d[a-z]{2})"
    + rf"|[A-Za-z]?,? (?:[A-Z]|\d+(?:st|nd|rd|th) |(?:{_NUMBER_FIRST_STREETS}) ))")

# A ZIP or postal code alone: after its label ("zip 62704", "postcode: 10115"), or closing a
# place someone lives in ("i live in springfield 62704") or a place after a comma that
# something is sent to ("ship it to Springfield, 62704"); a five-digit number anywhere else is
# as often a count or a code ("posted to issue 12345").
_ZIP = r"\d{5}(?:-\d{4})?(?![\d-])"
_ZIP_LABEL = r"\b(?:zip(?: ?code)?|postal ?code|post ?code|plz)\b(?: is|:|#)? ?"
_ZIP_LABELLED = re.compile(rf"(?P<cue>{_ZIP_LABEL})(?P<value>{_ZIP}|\d{{4}}(?![\d-]))",
                           re.IGNORECASE)
# A number right after a ZIP label is a ZIP code, never a phone number ("zip 62704-1234").
ZIP_LABEL_BEFORE = re.compile(rf"{_ZIP_LABEL}$", re.IGNORECASE)
_PLACE_WORD = r"[^\W\d_][\w'’-]*"
_ZIP_AFTER_PLACE = re.compile(
    rf"(?P<cue>\b(?:(?:live[sd]?|living|staying|located|based) in (?:{_PLACE_WORD},? ){{1,3}}"
    rf"|{_SENT_TO} (?:{_PLACE_WORD} ){{0,2}}{_PLACE_WORD}, ))(?P<value>{_ZIP})", re.IGNORECASE)
_ZIP_WORDS = ("zip", "postal", "post code", "postcode", "plz")
_FOUR_DIGITS = re.compile(r"\d{4}")


def might_hold_address(text: str, lowered: str) -> bool:
    """The cheap test before the full scan: most text has none of the hints."""
    return bool(_ADDRESS_HINT.search(text) or any(word in text for word in _PREFIX_STREETS)
                or any(word in lowered for word in (*_ADDRESS_CUES, *_ZIP_WORDS)))


def scrub_addresses(text: str) -> tuple[str, int]:
    """``text`` with each address replaced by ``<ADDRESS>``, and how many."""
    text, found = _ADDRESS.subn("<ADDRESS>", text)  # with its city
    zips = (_ZIP_LABELLED, _ZIP_AFTER_PLACE) if _FOUR_DIGITS.search(text) else ()
    for cued in (_CUED_ADDRESS, *zips):
        text, count = cued.subn(lambda m: m.group("cue") + "<ADDRESS>", text)
        found += count
    return text, found
