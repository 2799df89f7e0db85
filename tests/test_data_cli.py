"""``chatbot data build|list|show|export`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from chatbot.cli import main

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


def test_errors_are_one_line(run):
    missing = run("data", "show", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: no dataset 'nope' in ")
    strict = run("data", "build", "--name", "s", "--strict", "--from", str(DATA / "invalid.jsonl"))
    assert strict.exit_code == 1 and strict.stderr.count("\n") > 1  # the problems are listed
    assert strict.stderr.startswith("error: 10 problem(s) in the imported transcripts")
    bad_name = run("data", "build", "--name", "../x", "--from", str(DATA / "faq.csv"))
    assert bad_name.stderr.startswith("error: dataset name '../x' is not allowed")
    nothing = run("data", "list")
    assert nothing.stdout.startswith("no datasets yet")


def test_data_is_listed_under_training_and_evaluation(run):
    help_text = run("--help").stdout
    section = help_text.split("Training and evaluation:")[1]
    assert section.lstrip().startswith("data ")
