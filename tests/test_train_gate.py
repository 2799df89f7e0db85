"""``chatbot train --eval-gate``: the adapter is registered only when the gate passes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import main
from train_support import FACTS, fact_dataset, make_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def train_with_gate(tmp_path, tiny_model, monkeypatch, gate: str, *more: str):
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    fact_dataset(tmp_path / "data", tiny_model)
    config = tmp_path / "bot.yaml"
    config.write_text(f"models: {{chat: {tiny_model}, embedder: 'hash:64'}}\n"
                      "generation: {max_new_tokens: 8}\n")
    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"question": q, "answers": [a]}) + "\n"
                                for q, a in FACTS))
    return CliRunner().invoke(main, [
        "train", "--config", str(config), "--data", "facts", "--name", "zorb", "--max-steps",
        "2", "--lora-r", "4", "--eval-every", "2", "--device", "cpu", "--quiet",
        "--eval-gate", gate, "--eval-data", str(held_out), *more])


def test_a_failed_gate_registers_nothing_and_says_where_the_report_is(tmp_path, tiny_model,
                                                                    monkeypatch):
    result = train_with_gate(tmp_path, tiny_model, monkeypatch, "token_f1>=2")
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: evaluation gate failed: gate token_f1>=2 failed: zorb - ")
    assert "'zorb' was not registered (report: " in error
    assert not (tmp_path / "data/adapters/zorb").exists()
    assert not list((tmp_path / "data/adapters").glob(".zorb*"))
    assert (tmp_path / "data/evals/gate-zorb/report.md").is_file()
    ungated = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "bot.yaml"),
                                        "--data", "facts", "--name", "zorb", "--resume"])
    assert ungated.exit_code == 1
    assert ungated.stderr.startswith("error: run 'zorb' failed its evaluation gate (token_f1>=2)")
    assert not (tmp_path / "data/adapters/zorb").exists()


def test_a_passed_gate_registers_the_adapter(tmp_path, tiny_model, monkeypatch):
    result = train_with_gate(tmp_path, tiny_model, monkeypatch, "token_f1>=-2")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "data/adapters/zorb/adapter_manifest.json").read_text())
    assert manifest["name"] == "zorb"
    metrics = json.loads((tmp_path / "data/evals/gate-zorb/metrics.json").read_text())
    assert "zorb" in json.dumps(metrics)


def test_a_full_model_from_freeze_training_is_evaluated_and_served_as_a_variant(
        tmp_path, tiny_model, monkeypatch):
    """Freeze and full training save a complete model, not an adapter: the gate evaluates it
    and the bot then answers with it under its name."""
    result = train_with_gate(tmp_path, tiny_model, monkeypatch, "token_f1>=-2", "--method",
                             "freeze", "--train-blocks", "1")
    assert result.exit_code == 0, result.output
    answered = CliRunner().invoke(main, ["ask", "--config", str(tmp_path / "bot.yaml"),
                                         "--variant", "zorb", "--json", "What is zorb?"])
    assert answered.exit_code == 0, answered.output
    reply = json.loads(answered.stdout)
    assert reply["variant"] == "zorb" and reply["model"] == str(tmp_path / "data/adapters/zorb")


def test_a_malformed_gate_fails_before_training(tmp_path, tiny_model, monkeypatch):
    result = train_with_gate(tmp_path, tiny_model, monkeypatch, "f1 at least 0")
    assert result.exit_code == 1 and "is not METRIC>=NUMBER" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "data/runs/zorb").exists()


@pytest.mark.parametrize("flags, error", [
    (("--eval-data", "missing.jsonl"), "evaluation data 'missing.jsonl' is neither"),
    (("--eval-baseline", "nosuch"), "--eval-baseline 'nosuch' is not a variant; variants: "
                                    "prompt"),
    (("--name", "z" * 60), f"--eval-gate writes its report to evals/gate-{'z' * 60}, which is "
                           "not a usable folder name; give --name at most 59 characters"),
    (("--eval-limit", "2"), "--eval-gate compares on at least 3 held-out questions, and "
                            "--eval-limit 2 keeps 2; raise --eval-limit")])
def test_gate_inputs_that_cant_be_read_fail_before_training(tmp_path, tiny_model, monkeypatch,
                                                            flags, error):
    result = train_with_gate(tmp_path, tiny_model, monkeypatch, "token_f1>=0", *flags)
    assert result.exit_code == 1 and error in result.stderr.splitlines()[-1]
    assert not (tmp_path / "data/runs").exists()
