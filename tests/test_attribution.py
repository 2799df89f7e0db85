"""Per-sentence attribution: what a user relies on when an answer's sentences are marked.

The scoring tests use the real embedded embedder (all-MiniLM-L6-v2); the engine tests use the
echo generator, whose answer is the question, so the answer's text is chosen by the test.
"""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from chatbot.attribution import (WITHHELD_MESSAGE, AttributionSettings, Attributor,
                                 flag_notice)
from chatbot.engine import Engine
from chatbot.generate import GenerationSettings
from chatbot.logs import ConversationLog
from index.sentences import sentence_spans
from chatbot.variants import Variant
from index.embed import HashEmbedder
from index.types import Chunk, Hit

INDEXING = ("Run `chatbot index sync` again whenever your documents change. An unchanged file "
            "is skipped, and nothing is re-embedded. A file deleted from disk has its chunks "
            "removed from the index.")
CHUNKING = ("Chunk size and overlap are measured in tokens of the embedder's own tokenizer. "
            "By default a chunk is 200 tokens long, and neighbouring chunks share 30 tokens.")
PASSAGES = [INDEXING, CHUNKING]


@pytest.fixture(scope="module")
def minilm():
    from chatbot.config import EMBEDDED_EMBEDDER
    from chatbot.models import resolve_model
    from index.embed import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(resolve_model(EMBEDDED_EMBEDDER), name=EMBEDDED_EMBEDDER)


def sentence_of(passage: str, start: int) -> str:
    return next(passage[a:b] for a, b in sentence_spans(passage) if a == start)


def test_sentences_are_exact_spans_without_markers_code_or_false_breaks() -> None:
    text = ("Sure! Run it, e.g. on docs/ with version 3.11. Then stop.\n"
            "- A list item.\n2. Step two,\nwrapped. Done.\n```\ncode. Not checked.\n```\n"
            "## Heading\nA hard-wrapped\nparagraph.")
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Sure!", "Run it, e.g. on docs/ with version 3.11.", "Then stop.", "A list item.",
        "Step two,\nwrapped.", "Done.", "Heading", "A hard-wrapped\nparagraph."]


def test_sentences_start_with_a_capital_of_any_script_and_end_at_full_width_stops() -> None:
    for text, sentences in [
            ("Die Bibliothek öffnet um neun. Über Ostern bleibt sie zu.",
             ["Die Bibliothek öffnet um neun.", "Über Ostern bleibt sie zu."]),
            ("Вход свободный. Парковка платная.", ["Вход свободный.", "Парковка платная."]),
            ("图书馆九点开门。周一免费停车。", ["图书馆九点开门。", "周一免费停车。"]),
            ("Ends with e.g. this. and goes on.", ["Ends with e.g. this. and goes on."])]:
        assert [text[a:b] for a, b in sentence_spans(text)] == sentences


def test_an_indented_code_block_is_code_not_a_claim() -> None:
    text = ("Renewing a passport online costs 75 pounds.\n\n"
            "    curl -X POST https://example.org/renew --data fee=75 now.\n\n"
            "- A list item with a second line\n\n    that is indented, not code.\n")
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "Renewing a passport online costs 75 pounds.", "A list item with a second line",
        "that is indented, not code."]


def test_an_invented_answer_in_chinese_is_not_passed_as_supported() -> None:
    """A run of Chinese characters is no one word: its claims are checked like any other."""
    attributor = Attributor(None, AttributionSettings(policy="withhold", min_support=0.5))
    passage = "图书馆每天上午九点开门，晚上八点关门。"
    attribution, text = attributor.judge("图书馆每天上午九点开门。周一免费停车。", [passage])
    assert [s.claim for s in attribution.sentences] == [True, True]
    assert [s.supported for s in attribution.sentences] == [True, False]
    invented, _ = attributor.judge("周一和周二免费停车。地下车库有充电桩。", [passage])
    assert invented.action == "withheld" and invented.score == 0.0


@pytest.mark.integration
def test_a_paraphrase_is_backed_by_the_sentence_that_says_it(minilm) -> None:
    answer = "Files that did not change are skipped, so nothing gets embedded again."
    attribution = Attributor(minilm)(answer, PASSAGES)
    [sentence] = attribution.sentences
    assert sentence.supported and (sentence.start, sentence.end) == (0, len(answer))
    best = sentence.sources[0]
    assert best.source == 1
    assert sentence_of(INDEXING, best.start) == ("An unchanged file is skipped, and nothing is "
                                                 "re-embedded.")
    assert attribution.score == 1.0 and attribution.action == "shown"


@pytest.mark.integration
def test_changed_numbers_and_invented_claims_are_unsupported(minilm) -> None:
    answer = ("By default a chunk is 500 tokens long. The sync watches your folders and "
              "re-indexes them automatically. Neighbouring chunks share 30 tokens by default.")
    attribution = Attributor(minilm)(answer, PASSAGES)
    assert [s.supported for s in attribution.sentences] == [False, False, True]
    assert attribution.sentences[2].sources[0].source == 2
    third = attribution.sentences[2]
    assert attribution.score == pytest.approx((third.end - third.start) / sum(
        s.end - s.start for s in attribution.sentences))


def test_an_opening_naming_the_documents_is_not_part_of_the_claim(minilm) -> None:
    """The embedded model opens answers with "Based on the documentation,": no passage says
    that, and the claim after it is what is checked (a port in a URL included)."""
    passages = ["The web UI opens on http://127.0.0.1:7860. The host comes from server.host."]
    answer = ("Based on the documentation, the web UI opens on port 7860. According to the "
              "sources, the web UI opens on port 8080.")
    for attributor in (Attributor(minilm), Attributor(None)):
        assert [s.supported for s in attributor(answer, passages).sentences] == [True, False]


@pytest.mark.integration
def test_embedding_only_reachable_pairs_changes_no_decision(minilm) -> None:
    attributor = Attributor(minilm)
    claims = ["By default a chunk is 200 tokens long.", "Nothing is embedded twice.",
              "The sync watches your folders.", "Deleted files leave the index."]
    units = [p[a:b] for p in PASSAGES for a, b in sentence_spans(p)]
    exact, pruned = attributor.scores(claims, units, exact=True), attributor.scores(claims, units)
    assert ((exact >= attributor.threshold) == (pruned >= attributor.threshold)).all()
    assert (pruned != exact).any()  # some pairs were not embedded


@pytest.mark.integration
def test_an_answer_without_any_citation_still_gets_its_sources(minilm) -> None:
    """Small models write no [n]: the sources come from the text, not from citations."""
    answer = "Chunk size is counted in the embedder's tokens. I hope this helps!"
    attribution = Attributor(minilm)(answer, PASSAGES)
    claim, courtesy = attribution.sentences
    assert [s.source for s in claim.sources] == [2] and not courtesy.claim
    assert attribution.score == 1.0  # a courtesy sentence counts neither way


def test_with_no_passages_every_claim_is_unsupported_and_nothing_is_encoded() -> None:
    class Refusing(HashEmbedder):
        def encode(self, texts):
            raise AssertionError("nothing to compare: the embedder must not run")

    attribution = Attributor(Refusing())("The port is 7860 by default.", [])
    assert attribution.score == 0.0 and not attribution.sentences[0].supported


@pytest.mark.parametrize("policy, action, shown", [
    ("show", "shown", "answer"), ("flag", "flagged", "answer"),
    ("withhold", "withheld", WITHHELD_MESSAGE)])
def test_the_policy_applies_below_min_support_only(policy, action, shown) -> None:
    attributor = Attributor(None, AttributionSettings(policy=policy, min_support=0.5))
    invented = "The sync watches your folders and re-indexes them automatically."
    attribution, text = attributor.judge(invented, PASSAGES)
    assert attribution.action == action
    assert text == (invented if shown == "answer" else WITHHELD_MESSAGE)
    public = attribution.as_dict(public=True)
    assert ("notice" in public) == (action == "flagged")
    if action == "withheld":  # the log keeps the answer, surfaces never see it
        assert attribution.as_dict()["withheld_text"] == invented
        assert public["sentences"] == [] and "withheld_text" not in public
    supported = "An unchanged file is skipped, and nothing is re-embedded."
    attribution, text = attributor.judge(supported, PASSAGES)
    assert attribution.action == "shown" and text == supported


def test_flag_notice_states_the_share() -> None:
    assert flag_notice(0.25).startswith("Only 25% of this answer is supported")


# The engine: attribution after the answer, its log, and the withhold policy's hold.

VARIANTS = {"prompt": Variant("prompt", "base", "rag", True)}


def passages(query: str, k: int) -> list[Hit]:
    return [Hit(Chunk(f"c{n}", "docs/indexing.md", text, "Indexing", "h"), 0.8, n)
            for n, text in enumerate(PASSAGES, start=1)][:k]


def engine_with(echo, tmp_path, attributor: Attributor) -> Engine:
    return Engine(VARIANTS, lambda model: echo, search=passages,
                  log=ConversationLog(tmp_path / "logs.sqlite"),
                  settings=GenerationSettings(max_new_tokens=40), attributor=attributor)


ANSWER = "An unchanged file is skipped and nothing is re-embedded. The sync runs hourly by cron."


def test_the_reply_and_the_log_carry_the_attribution(echo, tmp_path) -> None:
    engine = engine_with(echo, tmp_path, Attributor(None))
    reply = engine.answer("s1", ANSWER).result()
    first, second = reply.attribution.sentences
    assert reply.text == ANSWER and first.supported and not second.supported
    assert reply.timings["attribution_ms"] >= 0
    logged = engine.log.conversation("s1").turns[1]
    assert logged.attribution == reply.attribution.as_dict()
    assert logged.attribution["sentences"][0]["sources"][0]["n"] == 1
    assert reply.as_dict()["attribution"]["score"] == round(reply.attribution.score, 4)


def test_the_answer_streams_before_attribution_runs(echo, tmp_path) -> None:
    """Attribution is off the streaming path: the reader has the whole text while it runs."""
    release, running = threading.Event(), threading.Event()

    class Slow(HashEmbedder):
        def encode(self, texts):
            running.set()
            release.wait(10)
            return super().encode(texts)

    stream = engine_with(echo, tmp_path, Attributor(Slow()))
    stream = stream.answer("s1", ANSWER)
    pieces, text = iter(stream), ""
    while text.strip() != ANSWER:
        text += next(pieces)
    assert running.wait(5) and stream.reply is None  # streamed in full, attribution running
    release.set()
    assert list(pieces) == [] and stream.reply.attribution is not None


def test_withhold_never_streams_the_answer_and_logs_it(echo, tmp_path) -> None:
    attributor = Attributor(None, AttributionSettings(policy="withhold", min_support=0.9))
    engine = engine_with(echo, tmp_path, attributor)
    stream = engine.answer("s1", ANSWER)
    assert list(stream) == [WITHHELD_MESSAGE]
    logged = engine.log.conversation("s1").turns[1]
    assert logged.text == stream.reply.text == WITHHELD_MESSAGE
    assert logged.attribution["action"] == "withheld"
    assert logged.attribution["withheld_text"] == ANSWER


def test_a_supported_answer_passes_the_withhold_policy(echo, tmp_path) -> None:
    attributor = Attributor(None, AttributionSettings(policy="withhold", min_support=0.5))
    supported = "An unchanged file is skipped and nothing is re-embedded."
    stream = engine_with(echo, tmp_path, attributor).answer("s1", supported)
    assert "".join(stream) == supported and stream.reply.attribution.action == "shown"


def test_an_old_log_gains_the_attribution_column(tmp_path) -> None:
    from chatbot.migrations import MIGRATIONS

    path = tmp_path / "logs.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for migration in MIGRATIONS[:3]:  # the schema before attribution
        migration(db)
        db.execute("INSERT INTO _migrations VALUES (?, '')", (migration.__name__,))
    db.commit()
    db.close()
    log = ConversationLog(path)
    log.ensure_session("s1")
    turn = log.add_turn("s1", "assistant", "", status="pending")
    log.finish_turn(turn, "hi", {}, "complete", {"score": 1.0})
    assert log.conversation("s1").turns[0].attribution == {"score": 1.0}
    raw = log._db.execute("SELECT attribution_json FROM turns").fetchone()[0]
    assert json.loads(raw) == {"score": 1.0}
