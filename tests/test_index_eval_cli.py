"""`chatbot index eval --data FILE` on a bot's own index: the report, its progress, Ctrl-C."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from ctrl_c import ctrl_c_once, started

from app.cli import main


def indexed_bot(tmp_path: Path, **pages: str) -> Path:
    """The config of a bot over docs/price.md (and ``pages``, name: text), its index synced."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "price.md").write_text("# Price\n\nIt costs nothing at all.\n")
    for name, text in pages.items():
        (tmp_path / "docs" / name).write_text(text)
    config = tmp_path / "bot.yaml"
    config.write_text('models:\n  embedder: "hash:256"\nindex:\n  paths: [docs]\n'
                      "retrieval:\n  min_score: null\n")
    assert CliRunner().invoke(main, ["index", "sync", "--config", str(config)]).exit_code == 0
    return config


def test_cli_measures_the_bots_own_index(tmp_path):
    install = "# Install\n\n## Linux\n\nRun the installer.\n"
    config = indexed_bot(tmp_path, **{"install.md": install})
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "installer linux",
                                "gold_sentences": ["Run the installer."]}) + "\n"
                    + json.dumps({"question": "what does it cost",
                                  "gold_passages": ["price.md#Price"]}) + "\n"
                    + json.dumps({"question": "is there a Windows build", "gold_sources": [],
                                  "not_answerable": True}) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["index", "eval", "--data", str(data), "--k", "1,2", "--json",
                                  "--config", str(config)], catch_exceptions=False)
    report = json.loads(result.stdout)
    assert report["questions"] == 2 and report["hit"] == {"1": 1.0, "2": 1.0}
    assert report["mrr"] == 1.0 and report["not_answerable"] == 1 and report["misses"] == []
    assert report["not_indexed"] == []
    table = runner.invoke(main, ["index", "eval", "--data", str(data), "--config", str(config)])
    assert table.stdout.startswith("2 questions (1 marked not_answerable left out); MRR 1.000")
    assert table.stdout.splitlines()[1:3] == ["| k | context hit@k | evidence recall@k | "
                                              "context words |", "|---|---|---|---|"]
    bad = runner.invoke(main, ["index", "eval", "--data", str(data), "--k", "0",
                               "--config", str(config)])
    assert bad.exit_code == 2 and "each k must be from 1 to 100" in bad.stderr


def test_gold_items_no_indexed_chunk_holds_are_named(tmp_path):
    """A typo in a gold item would read as a retrieval miss; the report says it can't be found."""
    config = indexed_bot(tmp_path)
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "cost", "gold_passages": ["prices.md"]}) + "\n"
                    + json.dumps({"question": "cost", "gold_sentences": ["It costs nothing at all.",
                                                                          "It is free."]}) + "\n"
                    + json.dumps({"question": "cost", "gold_sentences": ["It costs nothing"],
                                  "source": "other.md"}) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["index", "eval", "--data", str(data), "--json",
                                  "--config", str(config)], catch_exceptions=False)
    report = json.loads(result.stdout)
    assert report["not_indexed"] == ["prices.md", "It is free.", "It costs nothing"]
    assert report["misses"][0]["passages"] == ["docs/price.md > Price"]  # as the chat names it
    absolute = data.with_name("absolute.jsonl")  # a gold file given by its full path still counts
    absolute.write_text(json.dumps({"question": "cost",
                                    "gold_passages": [str(tmp_path / "docs" / "price.md")]}))
    result = runner.invoke(main, ["index", "eval", "--data", str(absolute), "--json",
                                  "--config", str(config)], catch_exceptions=False)
    assert json.loads(result.stdout)["hit"]["2"] == 1.0
    table = runner.invoke(main, ["index", "eval", "--data", str(data), "--config", str(config)])
    assert ("3 gold item(s) are in no indexed chunk (of the file their source names, where one "
            "is given)") in table.stdout  # "It costs nothing" is in price.md, not other.md
    assert "- prices.md\n- It is free.\n- It costs nothing\n" in table.stdout


def test_a_short_eval_prints_no_progress_as_a_short_sync_prints_none(tmp_path):
    """Index eval drew its own count ('questions: 1/25' ... at once, even for a run done in a
    blink) where sync and synth show the shared bar; it now shows that bar, which a run done
    within two seconds never draws. The bar's lines are test_cli_progress.py's."""
    config = indexed_bot(tmp_path)
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"question": f"cost {i}", "gold_passages": ["price.md"]})
                            + "\n" for i in range(25)))
    result = CliRunner().invoke(main, ["index", "eval", "--data", str(data), "--json",
                                       "--config", str(config)], catch_exceptions=False)
    assert json.loads(result.stdout)["questions"] == 25 and result.stderr == ""


def test_ctrl_c_stops_a_long_eval_with_one_line_also_in_the_background(tmp_path):
    """A real SIGINT to an eval started as `cmd &` does (SIGINT ignored) stops it."""
    config = indexed_bot(tmp_path)  # the run inherits the test's data dir
    data = tmp_path / "q.jsonl"
    data.write_text((json.dumps({"question": "cost", "gold_passages": ["price.md"]}) + "\n")
                    * 100_000)
    stderr = tmp_path / "stderr"
    with stderr.open("w") as err:
        run = started(["index", "eval", "--config", str(config), "--data", str(data)],
                      in_background=True, stderr=err)
        ctrl_c_once(run, lambda: "questions: " in stderr.read_text())
    assert stderr.read_text().splitlines()[-1] == (
        "error: interrupted; index eval writes nothing, so run it again for the metrics")


def test_cli_scores_a_chatbot_eval_file_and_names_the_lines_left_out(tmp_path):
    config = indexed_bot(tmp_path)
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [
        {"id": "cost", "question": "what does it cost", "answers": ["nothing"],
         "gold_ids": ["price"]},
        {"id": "port", "question": "which port", "answers": ["7860"]},
        {"id": "win", "question": "windows?", "answers": ["no"], "not_answerable": True},
        {"messages": [{"role": "user", "content": "cost?"},
                      {"role": "assistant", "content": "nothing"}]}]))
    runner = CliRunner()
    result = runner.invoke(main, ["index", "eval", "--data", str(data), "--json",
                                  "--config", str(config)], catch_exceptions=False)
    report = json.loads(result.stdout)
    assert report["questions"] == 1 and report["hit"]["2"] == 1.0 and report["not_indexed"] == []
    assert report["not_answerable"] == 1
    assert report["left_out"] == {"no_gold": [2], "conversation": [4]}
    table = runner.invoke(main, ["index", "eval", "--data", str(data), "--config", str(config)])
    lines = table.stdout.splitlines()
    assert lines[0] == ("1 questions (1 marked not_answerable, 2 with nothing to score left "
                        "out); MRR 1.000")
    assert lines[-3:] == [
        "Left out, as there is nothing to score:",
        "- line 2: no gold item to find (gold_sentences, gold_passages, gold_sources or "
        "gold_ids)",
        "- line 4: a conversation (messages): index eval searches single questions"]
