"""Names, and dates of birth and home places said in words, found by a spaCy NER model run
through Microsoft Presidio's analyzer (``training.data.redact`` decides which texts it reads and
replaces what it finds in the whole conversation, which Presidio's anonymizer does not do).

Only the model's NER component runs, batched with ``nlp.pipe`` through Presidio's
``BatchAnalyzerEngine``; Presidio's own loader is replaced so that a missing model is never
downloaded.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

import spacy
from presidio_analyzer import (AnalyzerEngine, BatchAnalyzerEngine, LocalRecognizer,
                               RecognizerRegistry, RecognizerResult)
from presidio_analyzer.nlp_engine import NlpEngineProvider, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from training.data.redact import BIRTH_CUES, HOME_CUES, LOWER_CASE_INTRO, NOT_NAMES

BATCH_SIZE = 128
# Presidio entity names for the model's labels; every other label is ignored.
_LABELS = {"PERSON": "NAME", "PER": "NAME", "DATE": "DATE", "GPE": "PLACE", "LOC": "PLACE",
           "FAC": "PLACE"}
# A DATE is a date of birth, and a PLACE a home, when a cue word comes at most three words
# before it.
_BIRTH_CUE = re.compile(rf"\b(?:{BIRTH_CUES})\b\W*(?:\w+\W+){{0,3}}$", re.IGNORECASE)
_HOME_CUE = re.compile(rf"\b(?:{HOME_CUES})\b\W*(?:\w+\W+){{0,3}}$", re.IGNORECASE)
# Where a name given after "i am" ends: the clause's end, or "and"/"from" ("i'm bill from sales")
_CLAUSE_END = re.compile(r"\s*(?:$|[,.;:!?)]|(?:and|from|here)\b)")


class NerFinder:
    """Finds the NER kinds (``NAME``, ``DOB``, ``ADDRESS``) in batches of texts."""

    def __init__(self, model: str, kinds: Sequence[str]) -> None:
        self.analyzer = _analyzer(model)
        self.kinds = list(kinds)
        nlp = self.analyzer.nlp_engine.nlp["en"]
        self.name = f"{nlp.meta['lang']}_{nlp.meta['name']} {nlp.meta['version']}"
        self.describing, self.verbs = (_describing_words(nlp) if "NAME" in self.kinds
                                       else (None, frozenset()))

    def find(self, texts: Sequence[str]) -> list[dict[str, str]]:
        """For each text, {entity as written: kind}; placeholders already there are skipped."""
        # The model tells a name by its capital: a name typed in lower case after "i am" is
        # shown to it once more capitalised, as "I am Tom" would be (see _intro_names).
        cased = {i: _capitalised_intros(text) for i, text in enumerate(texts)
                 if self.describing and LOWER_CASE_INTRO.search(text)}
        cased = {i: found for i, found in cased.items() if found[1]}
        found = list(BatchAnalyzerEngine(self.analyzer).analyze_iterator(
            [*texts, *(copy for copy, _ in cased.values())], "en", batch_size=BATCH_SIZE,
            entities=self.kinds))
        out = [{text[r.start:r.end]: r.entity_type for r in results
                if not {"<", ">"} & set(text[r.start:r.end])}
               for text, results in zip(texts, found)]
        for (i, (_, spans)), results in zip(cased.items(), found[len(texts):]):
            out[i].update(self._intro_names(texts[i], spans, results))
        return out

    def _intro_names(self, text: str, spans: list[tuple[int, int]],
                     results: list[RecognizerResult]) -> dict[str, str]:
        """The names found in the capitalised words ``spans`` of ``text``, as written, but a
        word that describes the writer ("i am stuck", "i'm glad"): capitalised, the model can
        take it for a name. A verb's base form can't describe: alone at the clause's end it
        is a name ("i am mark"), but with more words a learner's "i am try to sync"."""
        names = {}
        for r in results:
            entity = text[r.start:r.end]
            words = entity.split()
            if (r.entity_type == "NAME" and any(a <= r.start and r.end <= b for a, b in spans)
                    and not any(word in self.describing for word in words)
                    and (not self.verbs.intersection(words)
                         or len(words) == 1 and _CLAUSE_END.match(text, r.end))):
                names[entity] = "NAME"
        return names


def _capitalised_intros(text: str) -> tuple[str, list[tuple[int, int]]]:
    """``text`` with the lower-case words after each lower-case "i'm"/"i am" capitalised (up
    to two, up to a word such as "and" that names no one), and where those words are."""
    chars, spans = list(text), []
    for intro in LOWER_CASE_INTRO.finditer(text):
        start = end = intro.end() - 1
        for written in text[start:].split(" ")[:2]:
            word = written.rstrip(",.;:!?")
            if not word.isalpha() or not word.islower() or word in NOT_NAMES:
                break
            if len(word[0].upper()) == 1:  # "ß" would grow to "SS", shifting what follows
                chars[end] = word[0].upper()
            end += len(word) + 1
            if word != written:  # the clause ends with it
                break
        if end > start:
            spans.append((start, end - 1))
    return "".join(chars), spans


def _describing_words(nlp: spacy.Language) -> tuple[frozenset[str] | None, frozenset[str]]:
    """The adjectives and irregular verb forms ("stuck", "done") of the model's lemmatizer
    tables, which after "i am" describe the writer, and the verbs' base forms that are no
    adjective ("mark", "bill", "sue"), which can't. None and none when the model has no such
    tables (then a lower-case name is left to the model as it is)."""
    if "lemmatizer" not in nlp.component_names:
        return None, frozenset()
    lookups = getattr(nlp.get_pipe("lemmatizer"), "lookups", None)
    if lookups is None or not lookups.has_table("lemma_index"):
        return None, frozenset()
    index, exceptions = lookups.get_table("lemma_index"), lookups.get_table("lemma_exc", {})
    describing = frozenset([*index.get("adj", []), *exceptions.get("adj", {}),
                            *exceptions.get("verb", {})])
    return describing, frozenset(index.get("verb", [])) - describing


class _NerOnlySpacy(SpacyNlpEngine):
    """spaCy running its NER component only (and the embedding layer it listens to, in models
    that share one): the tagger, parser and lemmatizer find no PII.

    Replaces Presidio's loader, which would download a model that is not installed.
    """

    def load(self) -> None:
        self.nlp = {m["lang_code"]: _ner_only(spacy.load(m["model_name"])) for m in self.models}
        config = self.ner_model_configuration
        config.labels_to_ignore = [label for nlp in self.nlp.values()
                                   for label in nlp.get_pipe("ner").labels
                                   if label not in config.model_to_presidio_entity_mapping]


def _ner_only(nlp: spacy.Language) -> spacy.Language:
    needed = ["ner", *(name for name, pipe in nlp.pipeline
                       if "ner" in getattr(pipe, "listening_components", ()))]
    nlp.select_pipes(enable=needed)
    return nlp


class _CuedEntity(LocalRecognizer):
    """An NER entity of ``label`` is ``kind`` when ``cue`` matches just before it."""

    def __init__(self, kind: str, label: str, cue: re.Pattern) -> None:
        self.kind, self.label, self.cue = kind, label, cue
        super().__init__(supported_entities=[kind], name=f"{kind} from {label} after a cue")

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None) -> list[RecognizerResult]:
        return [RecognizerResult(self.kind, span.start_char, span.end_char, score)
                for span, score in zip(nlp_artifacts.entities, nlp_artifacts.scores)
                if span.label_ == self.label
                and self.cue.search(text, max(0, span.start_char - 40), span.start_char)]


@lru_cache(maxsize=None)
def _analyzer(model: str) -> AnalyzerEngine:
    """Presidio's analyzer on ``model``, loaded once per process (it takes seconds)."""
    engine = NlpEngineProvider(nlp_engines=(_NerOnlySpacy,), nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}],
        "ner_model_configuration": {"model_to_presidio_entity_mapping": _LABELS},
    }).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"], recognizers=[
        SpacyRecognizer(supported_entities=["NAME"]),
        _CuedEntity("DOB", "DATE", _BIRTH_CUE), _CuedEntity("ADDRESS", "PLACE", _HOME_CUE)])
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])
