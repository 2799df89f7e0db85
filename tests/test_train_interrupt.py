"""Ctrl-C of ``chatbot train`` (a real SIGINT to a real run) prints a command that works as
printed: ``--resume`` after a checkpoint, which takes the settings the run recorded, or the
same command again when no checkpoint was saved yet. A second run of one name, started while
the first trains, is refused and leaves the first one's run as it was."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from app.cli import main
from ctrl_c import ctrl_c_once, started
from train_support import fact_dataset, make_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def bot(isolated_state, tiny_model, tmp_path):
    fact_dataset(isolated_state, tiny_model)
    config = tmp_path / "bot.yaml"
    config.write_text(json.dumps({"models": {"chat": str(tiny_model)},
                                  "training": {"device": "cpu", "max_seq_len": 256}}))
    return config


def interrupted_run(config, name: str, flags: list[str], once_written) -> str:
    """Start ``chatbot train``, press Ctrl-C as soon as ``once_written`` exists; its stderr."""
    run = started(["train", "--data", "facts", "--name", name, "--quiet", *flags, "--config",
                   str(config)])
    stderr = ctrl_c_once(run, once_written.exists)
    assert "Traceback" not in stderr
    return stderr


def printed_command(stderr: str) -> list[str]:
    """The command in backticks on the last line, as a shell would split it."""
    command = shlex.split(re.search(r"`([^`]*)`", stderr.splitlines()[-1]).group(1))
    assert command[:2] == ["chatbot", "train"]
    return [sys.executable, "-m", "app", *command[1:]]


def test_the_printed_resume_command_continues_with_the_runs_own_settings(bot, isolated_state):
    flags = ["--max-steps", "12", "--batch-size", "2", "--eval-every", "2", "--patience", "0",
             "--lr", "1e-2"]
    run_dir = isolated_state / "runs/rs"
    stderr = interrupted_run(bot, "rs", flags, run_dir / "last.pt")
    assert stderr.splitlines()[-1] == (
        "error: interrupted; continue from the last checkpoint with `chatbot train --data facts "
        f"--name rs --quiet --config {bot} --resume`")

    # a flag given with another value than the run's is refused, and the run stays resumable
    refused = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                        "--name", "rs", "--resume", "--batch-size", "4"])
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: --resume needs the settings the run started with; "
                                     "changed: batch_size (2 -> 4); leave those flags out")
    assert (run_dir / "last.pt").is_file()

    resumed = subprocess.run(printed_command(stderr), capture_output=True, text=True,
                             env=os.environ, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == 12
    adapter = isolated_state / "adapters/rs"
    hyperparameters = json.loads((adapter / "adapter_manifest.json").read_text())[
        "hyperparameters"]
    assert {key: hyperparameters[key] for key in (
        "max_steps", "batch_size", "eval_every", "patience", "learning_rate")} == {
        "max_steps": 12, "batch_size": 2, "eval_every": 2, "patience": None,
        "learning_rate": 1e-2}
    steps = [json.loads(line)["step"] for line in
             (adapter / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(13))  # continued where it stopped, no step twice
    assert not run_dir.exists()


def test_ctrl_c_ends_the_progress_bar_before_the_error_and_leaves_it_ended(bot, isolated_state):
    """Without --quiet the error was written on the bar's line, and the bar again after it."""
    run = started(["train", "--data", "facts", "--name", "rp", "--max-steps", "400",
                   "--batch-size", "2", "--eval-every", "2", "--config", str(bot)])
    stderr = ctrl_c_once(run, (isolated_state / "runs/rp/last.pt").exists)
    *bar, said = stderr.splitlines()  # the bar's rewrites ('\r') read as lines here
    assert said.startswith("error: interrupted; continue from the last checkpoint with "), stderr
    assert bar[-1].startswith("training:") and bar[-1].endswith("]"), stderr


def test_before_the_first_checkpoint_it_says_so_and_prints_the_command_to_start_again(
        bot, isolated_state):
    flags = ["--max-steps", "8", "--batch-size", "2", "--eval-every", "8"]
    run_dir = isolated_state / "runs/rb"
    stderr = interrupted_run(bot, "rb", flags, run_dir / "metrics.jsonl")  # step 0 measured
    assert not (run_dir / "last.pt").exists()
    assert stderr.splitlines()[-1] == (
        "error: interrupted before the first checkpoint (saved at each validation), so there is "
        "nothing to resume; start again with `chatbot train --data facts --name rb --quiet "
        f"--batch-size 2 --max-steps 8 --eval-every 8 --config {bot}`")

    again = subprocess.run(printed_command(stderr), capture_output=True, text=True,
                           env=os.environ, timeout=600)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["steps"] == 8
    assert (isolated_state / "adapters/rb/adapter_manifest.json").is_file()


def test_a_second_run_of_one_name_is_refused_while_the_first_trains(bot, isolated_state):
    """Two runs of one name (two terminals, or a terminal and the web UI) share one run
    folder: the second emptied the first one's, whose next write then failed ("Parent
    directory ... does not exist"), or, once the first had a checkpoint, called it an
    interrupted run to --resume, which trained two processes into that folder."""
    run_dir = isolated_state / "runs/twice"
    first = started(["train", "--data", "facts", "--name", "twice", "--quiet", "--max-steps",
                     "100000", "--eval-every", "100000", "--config", str(bot)])
    deadline = time.monotonic() + 300
    while not (run_dir / "metrics.jsonl").is_file():  # step 0 measured: it trains
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "the first run had not begun after 300 s"
        time.sleep(0.05)
    for resume in ([], ["--resume"]):
        second = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                           "--name", "twice", "--max-steps", "1", "--quiet",
                                           *resume])
        assert second.exit_code == 1, second.output
        assert second.stderr == (
            f"error: a run named 'twice' is training in another process (it holds "
            f"{isolated_state / '.train-twice.lock'}); wait for it to end, or give another "
            "--name\n")
    assert (run_dir / "settings.json").is_file() and (run_dir / "metrics.jsonl").is_file()
    assert not (isolated_state / "adapters/twice").exists()

    stderr = ctrl_c_once(first, lambda: True)
    assert stderr.splitlines()[-1].startswith("error: interrupted before the first checkpoint")
    assert not (isolated_state / ".train-twice.lock").exists()


def test_resuming_a_run_whose_settings_record_was_cut_short_says_what_to_do(bot, isolated_state):
    """A run stopped while it wrote its settings (a full disk) left them cut short, and
    --resume then ended in a JSONDecodeError traceback."""
    run_dir = isolated_state / "runs/cut"
    run_dir.mkdir(parents=True)
    (run_dir / "settings.json").write_text('{\n  "method": "lora",\n  "lora_r"')
    result = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                       "--name", "cut", "--resume", "--quiet"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: {run_dir / 'settings.json'} is not valid JSON (")
    assert result.stderr.endswith(f"; delete {run_dir} and start again without --resume\n")


def test_the_lock_file_a_killed_run_leaves_does_not_refuse_the_next_run(bot, isolated_state):
    """kill -9 (or a power cut) ends a run before it removes its lock file; the lock itself
    dies with the process, so the next run of that name trains instead of being refused."""
    lock = isolated_state / ".train-killed.lock"
    run_dir = isolated_state / "runs/killed"
    first = started(["train", "--data", "facts", "--name", "killed", "--quiet", "--max-steps",
                     "100000", "--eval-every", "100000", "--config", str(bot)])
    deadline = time.monotonic() + 300
    while not (run_dir / "metrics.jsonl").is_file():
        assert first.poll() is None, first.communicate()[1]
        assert time.monotonic() < deadline, "the first run had not begun after 300 s"
        time.sleep(0.05)
    first.kill()
    first.communicate()
    assert lock.is_file()  # left behind, held by no one

    again = CliRunner().invoke(main, ["train", "--config", str(bot), "--data", "facts",
                                      "--name", "killed", "--max-steps", "1", "--quiet"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["steps"] == 1
    assert not lock.exists()
