"""``chatbot train`` and ``train sweep`` flags are checked by the rules of the config's
``training:`` section: a bad value is a usage error naming the flag, and nothing is written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import main
from train_support import fact_dataset, make_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def bot(isolated_state, tiny_model, tmp_path):
    """A config on the tiny model, with dataset ``facts`` built in the data dir: a run with
    good flags would train."""
    fact_dataset(isolated_state, tiny_model)
    config = tmp_path / "bot.yaml"
    config.write_text(json.dumps({"models": {"chat": str(tiny_model)},
                                  "training": {"device": "cpu", "max_seq_len": 256}}))
    return config


def assert_nothing_written(data_dir, name: str) -> None:
    for folder in ("runs", "adapters", "sweeps"):
        assert not (data_dir / folder / name).exists(), f"{folder}/{name} was created"


@pytest.mark.parametrize("flag, value, key, shown", [
    ("--lr", "-1", "learning_rate", "-1.0"),
    ("--batch-size", "0", "batch_size", "0"),
    ("--max-steps", "0", "max_steps", "0"),
    ("--epochs", "0", "epochs", "0.0"),
    ("--lora-dropout", "1", "lora_dropout", "1.0"),
])
def test_a_flag_out_of_range_fails_like_its_config_key_and_writes_nothing(
        bot, isolated_state, tmp_path, flag, value, key, shown):
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(json.dumps({"training": {key: float(value)}}))
    check = CliRunner().invoke(main, ["config", "check", str(bad_config)])
    allowed = check.stderr.strip().split("; allowed: ", 1)[1]  # e.g. above 0

    out = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--quiet", flag, value])

    assert out.exit_code == 2  # click's code for usage errors
    assert out.stderr.endswith(f"Error: Invalid value for '{flag}': {shown} is out of range; "
                               f"allowed: {allowed} (as for training.{key})\n")
    assert "Traceback" not in out.output
    assert_nothing_written(isolated_state, "zorb")


def test_every_bad_flag_is_reported_at_once(bot, isolated_state):
    out = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--batch-size", "0", "--eval-every", "0",
                                    "--threads", "0"])
    assert out.exit_code == 2
    for flag in ("--batch-size", "--eval-every", "--threads"):
        assert f"Invalid value for '{flag}': 0 is out of range; allowed: at least 1" \
            in out.stderr
    assert_nothing_written(isolated_state, "zorb")


def test_patience_zero_turns_early_stopping_off_and_below_zero_is_refused(bot, isolated_state):
    out = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--patience", "-1"])
    assert out.exit_code == 2
    assert "Invalid value for '--patience': -1 is not in the range x>=0." in out.stderr
    assert_nothing_written(isolated_state, "zorb")

    out = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--quiet", "--patience", "0",
                                    "--max-steps", "2", "--eval-every", "1"])
    assert out.exit_code == 0, out.output
    manifest = json.loads((isolated_state / "adapters/zorb/adapter_manifest.json").read_text())
    assert manifest["hyperparameters"]["patience"] is None


@pytest.mark.parametrize("method", ["lora", "freeze"])
def test_quiet_prints_the_summary_alone(bot, isolated_state, method):
    """--quiet hid the training bar, while the model's loading bar (and, for a full model,
    its writing bar) still ran on the terminal."""
    out = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--quiet", "--max-steps", "1",
                                    "--eval-every", "1", "--method", method,
                                    "--train-blocks", "1"])
    assert out.exit_code == 0, out.output
    assert out.stderr == ""
    assert json.loads(out.stdout)["steps"] == 1


def test_a_preference_beta_of_zero_or_less_is_refused(bot, isolated_state):
    out = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--method", "dpo", "--beta", "0"])
    assert out.exit_code == 2
    assert "Invalid value for '--beta': 0.0 is not in the range x>0." in out.stderr
    assert_nothing_written(isolated_state, "zorb")


@pytest.mark.parametrize("flags", [["--beta", "0.2"], ["--method", "lora", "--beta", "0.2"],
                                   ["--from-adapter", "sft"]])
def test_a_preference_flag_without_dpo_or_kto_is_refused_not_ignored(bot, isolated_state,
                                                                      flags):
    """--beta on an SFT run trained as if it had not been given."""
    out = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--max-steps", "1", "--quiet", *flags])
    assert out.exit_code == 2, out.output
    assert out.stderr.endswith(f"Error: {flags[-2]} applies to --method dpo or kto\n")
    assert_nothing_written(isolated_state, "zorb")


def test_sweep_trials_zero_is_refused_not_read_as_the_default(bot, isolated_state):
    out = CliRunner().invoke(main, ["train", "sweep", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--trials", "0"])
    assert out.exit_code == 2
    assert out.stderr.endswith("Error: Invalid value for '--trials': 0 is out of range; "
                               "allowed: at least 1 (as for training.sweep.trials)\n")
    assert_nothing_written(isolated_state, "zorb")


def test_sweep_training_flags_follow_the_training_rules(bot, isolated_state):
    out = CliRunner().invoke(main, ["train", "sweep", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--trials", "2", "--max-steps", "0"])
    assert out.exit_code == 2
    assert "Invalid value for '--max-steps': 0 is out of range; allowed: at least 1" \
        in out.stderr
    assert_nothing_written(isolated_state, "zorb")


def test_sweep_checks_its_ranges_and_the_dataset_before_creating_the_study(bot,
                                                                           isolated_state):
    out = CliRunner().invoke(main, ["train", "sweep", "--config", str(bot), "--data", "facts",
                                    "--name", "zorb", "--rank", ","])
    assert out.exit_code == 2
    assert ("Invalid value for '--rank': needs at least 1 item, got none "
            "(as for training.sweep.lora_r)") in out.stderr
    assert_nothing_written(isolated_state, "zorb")

    out = CliRunner().invoke(main, ["train", "sweep", "--config", str(bot), "--data", "nope",
                                    "--name", "zorb", "--trials", "1"])
    assert out.exit_code == 1
    assert out.stderr.startswith("error: dataset 'nope' not found")
    assert "Traceback" not in out.output
    assert_nothing_written(isolated_state, "zorb")
    assert not list((isolated_state / "runs").glob("zorb-trial-*"))
