"""Corrected answers: stored with the turn (original kept), from the CLI and the API, and used
by `chatbot data build` as the turn's target."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.build import data_settings
from app.cli import main
from chatbot.config import BotConfig
from chatbot.errors import InputError
from chatbot.logs import ConversationLog
from chatbot.migrations import MIGRATIONS, migrate
from training.errors import DataError
from log_support import log_exchanges
from training.data.build import build_dataset
from training.data.dataset import load_examples

ANSWER = "Delete it from the folder and sync again; it is dropped from the index."
FIXED = "Run `chatbot index remove PATH`, or delete the file and run `chatbot index sync`."
PATTERNS_ONLY = "no_such_spacy_model"
"""PII by patterns alone: loading the NER model would only slow these tests."""


@pytest.fixture
def config(tmp_path, monkeypatch) -> BotConfig:
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "bot"))
    return BotConfig(data={"pii_ner_model": PATTERNS_ONLY})


@pytest.fixture
def log(config) -> ConversationLog:
    log = ConversationLog(config.data_path / "logs.sqlite")
    yield log
    log.close()


def test_a_log_at_the_attribution_schema_gains_the_corrections_tables(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "old.sqlite")
    for migration in MIGRATIONS[:4]:
        migration(db)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    db.executemany("INSERT INTO _migrations VALUES (?, '')",
                   [(m.__name__,) for m in MIGRATIONS[:4]])
    assert migrate(db) == ["m005_corrections", "m006_turn_error", "m007_history_digest"]
    assert "error" in {row[1] for row in db.execute("PRAGMA table_info(turns)")}


def test_the_latest_correction_wins_and_the_original_and_history_stay(log) -> None:
    turn = log_exchanges(log, "s1", [("How do I remove a document?", ANSWER, -1)])[0]
    log.add_correction(turn, "A first try.", author="ana")
    saved = log.add_correction(turn, f"  {FIXED}\n", author="bo")
    answer = log.conversation("s1").turns[1]
    assert (answer.text, answer.correction) == (ANSWER, FIXED)
    assert [(c.text, c.author) for c in log.corrections(turn)] == [("A first try.", "ana"),
                                                                   (FIXED, "bo")]
    assert saved.id == log.corrections(turn)[-1].id


def test_a_review_expecting_an_unreviewed_answer_keeps_the_one_saved_first(log) -> None:
    turn = log_exchanges(log, "s1", [("How do I remove a document?", ANSWER, -1)])[0]
    log.approve(turn, author="ana", seen_unreviewed=True)
    with pytest.raises(InputError, match=f"turn {turn} was approved by someone else since you"):
        log.add_correction(turn, FIXED, author="bo", seen_unreviewed=True)
    assert log.corrections(turn) == []
    assert log.add_correction(turn, FIXED).text == FIXED  # `chatbot logs correct`: the latest wins


@pytest.mark.parametrize("turn, text, message", [
    (999, FIXED, "no turn 999 in "),
    (1, FIXED, "turn 1 is a user message, not an answer"),
    (2, "  ", "the correction of turn 2 is empty"),
    (2, "\x00\x01", "the correction of turn 2 is empty"),
    (2, "x" * 20_001, "the correction of turn 2 has 20,001 characters; at most 20,000"),
    (10**30, FIXED, f"no turn {10**30} in "),
    (2, "\n" + ANSWER.replace(" ", "  ") + " ", "the correction of turn 2 is the same as the "
                                                 "answer; edit it, or approve the answer"),
])
def test_a_bad_correction_is_refused_and_saves_nothing(log, turn, text, message) -> None:
    log_exchanges(log, "s1", [("How do I remove a document?", ANSWER, None)])
    with pytest.raises(InputError, match=message):
        log.add_corrections([(2, FIXED), (turn, text)])
    assert log.corrections(2) == []


def test_a_comment_is_kept_without_control_characters_and_within_the_limit(log) -> None:
    turn = log_exchanges(log, "s1", [("How do I remove a document?", ANSWER, None)])[0]
    log.add_feedback(turn, -1, "wrong \x1b[31mcommand\x00 ")
    assert log.conversation("s1").turns[1].comment == "wrong [31mcommand"
    with pytest.raises(InputError, match="the comment on turn 2 has 20,001 characters"):
        log.add_feedback(turn, -1, "x" * 20_001)
    with pytest.raises(InputError, match=f"no answer with turn id {2**63}"):
        log.add_feedback(2**63, 1)


def test_data_build_trains_on_the_correction_and_the_review_file_shrinks(config, log) -> None:
    turns = log_exchanges(log, "s1", [("How do I sync my docs folder?",
                                       "Run `chatbot index sync docs/` from the project.", 1),
                                      ("And remove a document?", ANSWER, -1)],
                          comment="Wrong: there is a remove command.")
    settings = data_settings(config)
    before = build_dataset(settings, "before", ["logs"])
    assert (before.review, before.corrected) == (1, 0)
    log.add_correction(turns[1], FIXED, author="ana")
    after = build_dataset(settings, "after", ["logs"])
    assert (after.review, after.corrected, after.train + after.validation) == (0, 1, 2)
    folder = config.data_path / "datasets" / "after"
    assert (folder / "review_thumbs_down.jsonl").read_text() == ""
    targets = [row["messages"][-1]["content"] for split in load_examples(folder).values()
               for row in split]
    assert FIXED in targets and ANSWER not in targets
    assert "reviewer's correction" in (folder / "data_report.md").read_text()
    assert log.conversation("s1").turns[3].text == ANSWER  # the original stays in the log


def test_a_corrected_answer_that_was_cut_short_is_trained_on_its_correction(config, log) -> None:
    """The server stopped mid-answer; a reviewer wrote the answer it should have given."""
    from training.data.preference import load_preference_dataset
    from training.data.preference_build import build_preference_dataset

    [turn] = log_exchanges(log, "s1", [("And remove a document?", ANSWER, None)])
    log.finish_turn(turn, "Delete it from", {}, "interrupted")
    settings = data_settings(config)
    with pytest.raises(DataError, match=rf"logs:s1:1: answer is interrupted, not used; "
                                        rf"`chatbot logs correct {turn} --text \.\.\.` "
                                        "writes the answer to train on instead"):
        build_dataset(settings, "before", ["logs"])
    log.add_correction(turn, FIXED)
    after = build_dataset(settings, "after", ["logs"])
    assert (after.skipped, after.corrected, after.train + after.validation) == (0, 1, 1)
    build_preference_dataset(settings, "prefs")
    data = load_preference_dataset(config.data_path / "datasets" / "prefs")
    assert [(row.completion, row.label) for split in data.kto.values() for row in split] == [
        (FIXED, True)]
    assert not [pair for split in data.dpo.values() for pair in split]  # no cut text to reject


def test_an_answer_approved_as_it_is_is_trained_on_despite_its_thumbs_down(config, log) -> None:
    """The reviewer's "fine as it is" overrides the thumb, in both kinds of dataset."""
    from training.data.preference import load_preference_dataset
    from training.data.preference_build import build_preference_dataset

    [turn] = log_exchanges(log, "s1", [("And remove a document?", ANSWER, -1)],
                           comment="Is this right?")
    settings = data_settings(config)
    with pytest.raises(DataError, match=r"nothing to train on: .*\(feedback: 1 thumbed down\)"):
        build_dataset(settings, "before", ["logs"])
    log.approve(turn, author="ana")
    after = build_dataset(settings, "after", ["logs"])
    assert (after.review, after.train + after.validation) == (0, 1)
    assert "1 approved (kept)" in (config.data_path / "datasets/after/data_report.md").read_text()
    build_preference_dataset(settings, "prefs")
    rows = load_preference_dataset(config.data_path / "datasets" / "prefs").kto
    assert [(row.completion, row.label) for split in rows.values() for row in split] == [
        (ANSWER, True)]


@pytest.mark.parametrize("policy, kept, corrected", [("prefer", 2, 1), ("only", 1, 1),
                                                     ("ignore", 1, 0)])
def test_the_corrections_setting(tmp_path, monkeypatch, policy, kept, corrected) -> None:
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "bot"))
    config = BotConfig(data={"corrections": policy, "pii_ner_model": PATTERNS_ONLY})
    log = ConversationLog(config.data_path / "logs.sqlite")
    turns = log_exchanges(log, "s1", [("How do I sync my docs folder?",
                                       "Run `chatbot index sync docs/` from the project.", None),
                                      ("And remove a document?", ANSWER, -1)])
    log.add_correction(turns[1], FIXED)
    log.close()
    summary = build_dataset(data_settings(config), "d", ["logs"])
    assert (summary.train + summary.validation, summary.corrected) == (kept, corrected)


def invoke(config_path, *args: str):
    return CliRunner().invoke(main, ["logs", "correct", *args, "--config", str(config_path)],
                              catch_exceptions=False)


@pytest.fixture
def config_file(tmp_path, isolated_state):
    path = tmp_path / "bot.yaml"
    path.write_text("name: test-bot\n")
    log = ConversationLog(isolated_state / "logs.sqlite")
    log_exchanges(log, "s1", [("How do I remove a document?", ANSWER, -1),
                              ("And add one?", "Put it in docs/ and sync.", None)])
    log.close()
    return path


def test_cli_corrects_one_turn_or_a_file(config_file, isolated_state, tmp_path) -> None:
    result = invoke(config_file, "2", "--text", FIXED, "--author", "ana")
    assert result.exit_code == 0 and "saved 1 correction" in result.output
    rows = tmp_path / "corrections.jsonl"
    rows.write_text(json.dumps({"turn_id": 4, "text": "Copy it into docs/ and run sync."}) + "\n")
    assert invoke(config_file, "--file", str(rows)).exit_code == 0
    log = ConversationLog(isolated_state / "logs.sqlite")
    answers = [t for t in log.conversation("s1").turns if t.role == "assistant"]
    assert [a.correction for a in answers] == [FIXED, "Copy it into docs/ and run sync."]
    assert log.corrections(2)[0].author == "ana"


@pytest.mark.parametrize("args, message", [
    (["7", "--text", FIXED], "error: no turn 7 in "),
    (["1", "--text", FIXED], "error: turn 1 is a user message, not an answer; correct the "
                             "bot's answer that follows it"),
    (["2", "--text", " "], "error: the correction of turn 2 is empty"),
    (["2", "--text", ANSWER], "error: the correction of turn 2 is the same as the answer"),
    (["2"], "error: give the corrected answer of turn 2 with --text"),
    ([], "error: give either TURN_ID with --text, or --file corrections.jsonl"),
])
def test_cli_errors_name_the_problem(config_file, args, message) -> None:
    result = invoke(config_file, *args)
    assert result.exit_code == 1 and message in result.output, result.output


def test_a_bad_line_in_a_corrections_file_saves_none(config_file, isolated_state,
                                                     tmp_path) -> None:
    rows = tmp_path / "corrections.jsonl"
    rows.write_bytes(b"\xef\xbb\xbf" + json.dumps({"turn_id": 2, "text": FIXED}).encode()
                     + b'\n{"turn": 4}\n{"turn_id": 2, "text": "caf\xe9"}\n')  # BOM, Latin-1
    result = invoke(config_file, "--file", str(rows))
    assert result.exit_code == 1
    assert f'{rows}:2: expected {{"turn_id": N, "text": "..."}}' in result.output
    assert f"{rows}:3: not UTF-8 text (byte 0xe9); re-save the file as UTF-8" in result.output
    assert f"{rows}:1" not in result.output  # a byte-order mark is no problem
    assert ConversationLog(isolated_state / "logs.sqlite").corrections(2) == []


def test_every_correction_the_log_refuses_is_named_by_its_line(config_file, isolated_state,
                                                               tmp_path) -> None:
    rows = tmp_path / "corrections.jsonl"
    lines = [{"turn_id": 2, "text": FIXED}, {"turn_id": 1, "text": FIXED},
             {"turn_id": 999, "text": FIXED}, {"turn_id": 2, "text": "  "},
             {"turn_id": True, "text": FIXED}]
    rows.write_text("".join(json.dumps(line) + "\n" for line in lines[:4]) + "not json\n")
    result = invoke(config_file, "--file", str(rows))
    assert result.exit_code == 1  # the lines the log refuses and those it can't read, at once
    assert result.output.startswith("error: 4 bad lines, nothing saved: "
                                    f"{rows}:2: turn 1 is a user message")
    assert f"; {rows}:3: no turn 999 in " in result.output
    assert f"; {rows}:4: the correction of turn 2 is empty" in result.output
    assert f"; {rows}:5: not JSON (Expecting value)" in result.output
    rows.write_text(json.dumps(lines[4]) + "\n")  # true is not turn 1
    assert f'{rows}:1: expected {{"turn_id": N' in invoke(config_file, "--file", str(rows)).output
    assert ConversationLog(isolated_state / "logs.sqlite").corrections(2) == []


def test_a_file_of_many_bad_lines_says_how_many_it_did_not_list(config_file, tmp_path) -> None:
    """Ten of twelve bad lines were listed under 'error: 12 bad line(s)' with no word that
    two more went unlisted; one bad line read '1 bad line(s)'."""
    rows = tmp_path / "corrections.jsonl"
    rows.write_text("not json\n" * 12)
    said = invoke(config_file, "--file", str(rows)).output
    assert said.startswith("error: 12 bad lines, nothing saved: ")
    assert said.count("not JSON") == 10
    assert said.endswith(f"{rows}:10: not JSON (Expecting value); and 2 more bad lines\n")
    rows.write_text("not json\n")
    assert invoke(config_file, "--file", str(rows)).output == (
        f"error: 1 bad line, nothing saved: {rows}:1: not JSON (Expecting value)\n")


def test_cli_corrects_as_a_user_the_system_has_no_name_for(tmp_path) -> None:
    """A container run as a bare uid (`docker run -u 1234`), with no $USER: the correction is
    saved without an author, where the default --author was a KeyError traceback."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    unnamed = 54321
    as_unnamed = ["setpriv", f"--reuid={unnamed}", f"--regid={unnamed}", "--clear-groups"]
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run as a uid with no name")
    if subprocess.run([*as_unnamed, sys.executable, "-c", ""]).returncode != 0:
        pytest.skip("this Python is out of reach of other users (under root's home)")
    folder = Path(tempfile.mkdtemp())  # under /tmp: tmp_path's folders are root's alone
    try:
        folder.chmod(0o777)
        log = ConversationLog(folder / "data" / "logs.sqlite")
        log_exchanges(log, "s1", [("How do I remove a document?", ANSWER, -1)])
        log.close()
        os.chown(folder / "data", unnamed, unnamed)
        for path in (folder / "data").iterdir():
            os.chown(path, unnamed, unnamed)
        (folder / "bot.yaml").write_text(f"data_dir: {folder / 'data'}\n")
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.getcwd()}
        result = subprocess.run([*as_unnamed, sys.executable, "-m", "app", "logs", "correct",
                                 "2", "--text", FIXED, "--config", str(folder / "bot.yaml")],
                                env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "saved 1 correction" in result.stdout, result.stderr
        log = ConversationLog(folder / "data" / "logs.sqlite")
        assert [(c.text, c.author) for c in log.corrections(2)] == [(FIXED, None)]
        log.close()
    finally:
        shutil.rmtree(folder)
