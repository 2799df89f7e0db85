"""Ctrl-C of `chatbot models prepare` and `chatbot data synth`, real processes: they end with
the project's one-line interrupt error and exit status 1, as `chatbot train` does, not with
click's "Aborted!"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from ctrl_c import ctrl_c_once, started
from test_cancellation import talkative_model_dir  # noqa: F401 (a fixture)


def test_ctrl_c_mid_conversion_of_models_prepare_says_to_run_it_again(tmp_path) -> None:
    cache = tmp_path / "cache"
    config = tmp_path / "bot.yaml"
    config.write_text("name: fresh\n")  # the embedded models, converted into an empty cache
    run = started(["models", "prepare", "--config", str(config)],
                  CHATBOT_CACHE_DIR=str(cache), CHATBOT_DATA_DIR=str(tmp_path / "data"))
    stderr = ctrl_c_once(run, lambda: any(cache.glob("*.partial")))
    assert stderr.splitlines()[-1] == (
        "error: interrupted; a model cut off mid-conversion is not used: run the same command "
        "again to convert it"), stderr
    assert "Aborted!" not in stderr
    assert not [p for p in cache.iterdir() if p.is_dir() and not p.name.endswith(".partial")]


def test_ctrl_c_mid_synthesis_says_the_finished_chunks_are_kept(
        tmp_path, talkative_model_dir) -> None:  # noqa: F811
    (tmp_path / "docs").mkdir()
    for i in range(6):
        (tmp_path / "docs" / f"page{i}.md").write_text(f"# Page {i}\n\nPage {i} says {i}.\n")
    config = tmp_path / "bot.yaml"
    config.write_text(yaml.safe_dump({
        "name": "talkative-bot", "models": {"chat": str(talkative_model_dir),
                                            "embedder": "hash:64"},
        "generation": {"max_new_tokens": 60}, "index": {"paths": [str(tmp_path / "docs")]}}))
    env = {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")}
    subprocess.run([sys.executable, "-m", "app", "index", "sync", "--config", str(config)],
                   env=env, check=True, capture_output=True)
    calls = tmp_path / "data" / "datasets" / ".synth-cold" / "teacher_calls.jsonl"
    run = started(["data", "synth", "--name", "cold", "--teacher", "prompt", "--n", "30",
                   "--config", str(config)], CHATBOT_DATA_DIR=str(tmp_path / "data"))
    stderr = ctrl_c_once(run, lambda: calls.is_file() and calls.stat().st_size > 0)
    assert stderr.splitlines()[-1] == (
        "error: interrupted; run the same command again to continue dataset 'cold': the "
        "chunks finished are kept"), stderr
    assert "Aborted!" not in stderr
