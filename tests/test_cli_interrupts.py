"""Ctrl-C of `chatbot models prepare` and `chatbot data synth`, real processes, and of any
command still importing its libraries: they end with the project's one-line interrupt error and
exit status 1, as `chatbot train` does, not with click's "Aborted!" or a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
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


HELD_IMPORT = """
import importlib.abc, runpy, sys

HELD = sys.argv[1]

class Holds(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == HELD:  # held until told to go on
            sys.meta_path.remove(self)
            print("importing", flush=True)
            sys.stdin.readline()

sys.meta_path.insert(0, Holds())
sys.argv = ["chatbot", *sys.argv[2:]]
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


ENDS = "error: interrupted; "


@pytest.mark.parametrize("held, command, code, stdout, stderr", [
    # the first library the command line needs
    ("click", ["index", "sync"], 1, "", ENDS + "nothing was done\n"),
    # one a command imports when it runs
    ("app.build", ["ask", "How?"], 1, "", ENDS + "no answer had begun\n"),
    ("app.build", ["index", "sync"], 1, "", ENDS + "the index is as the last finished sync left "
     "it (`chatbot index stats` shows it); run the sync again to index the files\n"),
    ("app.build", ["train", "sweep", "--data", "facts", "--name", "z"], 1, "", ENDS + "run the "
     "same command again to continue sweep 'z': finished trials are kept and the interrupted "
     "one runs again\n"),
    ("app.build", ["train", "--data", "facts", "--name", "z"], 1, "", "error: interrupted "
     "before the first checkpoint (saved at each validation), so there is nothing to resume; "
     "start again with `chatbot train --data facts --name z --config CONFIG`\n"),
    ("app.build", ["index", "eval", "--data", "CONFIG"], 1, "", ENDS + "index eval writes "
     "nothing, so run it again for the metrics\n"),
    ("training.synth.run", ["data", "synth", "--name", "cold", "--teacher", "prompt"], 1, "",
     ENDS + "run the same command again to continue dataset 'cold': the chunks finished are "
     "kept\n"),
    ("app.build", ["eval", "--variants", "prompt,other", "--data", "CONFIG"], 1, "", ENDS
     + "run the same command again to continue eval 'bot': the answers generated so far are "
     "kept\n"),
    # a command with no Ctrl-C handling of its own
    ("app.build", ["index", "search", "q"], 1, "", "error: interrupted\n"),
    # the session ends as a Ctrl-C at its prompt ends it; the server stops as it stops
    ("app.build", ["chat"], 0, "\n", ""),
    ("uvicorn", ["serve"], 0, "", "stopped\n"),
])
def test_ctrl_c_while_the_command_imports_its_libraries_ends_in_one_line(
        tmp_path, held, command, code, stdout, stderr) -> None:
    """Pressed before the command has begun, its libraries still importing: a traceback from
    inside whichever import it met (or click's "Aborted!"), before; the project's one line."""
    config = tmp_path / "bot.yaml"
    config.write_text("name: fresh\n")
    run = subprocess.Popen(
        [sys.executable, "-c", HELD_IMPORT, held,
         *[str(config) if word == "CONFIG" else word for word in command], "--config", str(config)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")})
    assert run.stdout.readline() == "importing\n"
    run.send_signal(signal.SIGINT)
    said = run.communicate("go on\n", timeout=300)
    assert (run.returncode, *said) == (code, stdout, stderr.replace("CONFIG", str(config)))
    assert not (tmp_path / "data").exists()


CUT_SHORT = """
import fcntl, struct, sys, termios
from app.commands.common import ctrl_c_ends_with, one_line_errors
from app.commands.progress import ProgressBar

fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a pty has no size

@one_line_errors
def cut_short():
    with ctrl_c_ends_with("then"):
        with ProgressBar("question", delay=float(sys.argv[2])) as bar:
            for done in range(1, int(sys.argv[1]) + 1):
                bar.count(done, 3)
            raise KeyboardInterrupt

cut_short()
"""


@pytest.mark.parametrize("counted, delay", [
    ("1", "0"),  # the bar's line left open mid-way
    ("3", "0"),  # the bar full
    ("1", "60"),  # no bar drawn yet
])
def test_ctrl_c_after_progress_on_a_terminal_starts_a_line_of_its_own(counted, delay) -> None:
    """The error follows the progress on the next line, with no blank line between."""
    import pty

    reader, writer = pty.openpty()
    subprocess.run([sys.executable, "-c", CUT_SHORT, counted, delay], stderr=writer)
    os.close(writer)
    said = os.read(reader, 4000).decode()
    os.close(reader)
    assert said.endswith("error: interrupted; then\r\n"), said
    bar = said.removesuffix("error: interrupted; then\r\n")
    if delay == "0":  # the bar's last state, its line ended once
        assert bar.endswith("\r\n") and "\n" not in bar[:-1], said
        assert f"{counted}/3" in bar.split("\r")[-2], said
    else:
        assert bar == "", said


PRESSED_AS_IT_FINISHES = """
import os, runpy, signal, sys, time
from importlib import import_module

class PressesCtrlCWhenCollected:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler runs here, inside __del__, and ends the sleep

module, name = sys.argv[1].rsplit(".", 1)
work = getattr(import_module(module), name)

def work_then_a_dropped_press(*args, **kwargs):
    result = work(*args, **kwargs)
    sys.unraisablehook = lambda report: None  # Python's "Exception ignored" report
    PressesCtrlCWhenCollected()
    return result

setattr(import_module(module), name, work_then_a_dropped_press)
sys.argv = ["chatbot", *sys.argv[2:]]
runpy.run_module("app", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("work, command", [
    ("chatbot.indexing.sync_paths", ["index", "sync"]),
    ("chatbot.indexing.evaluate_index", ["index", "eval", "--data", "QUESTIONS"]),
])
def test_a_ctrl_c_dropped_as_the_work_finishes_does_not_call_it_interrupted(
        tmp_path, work, command) -> None:
    """A real SIGINT that Python dropped (inside a ``__del__``) once the work was done: the
    command said 'error: interrupted; ...' with exit status 1 though its result was complete
    and written; it now finishes as it would have, and says why the press did not stop it."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "price.md").write_text("# Price\n\nIt costs nothing at all.\n")
    config = tmp_path / "bot.yaml"
    config.write_text('models:\n  embedder: "hash:64"\nindex:\n  paths: [docs]\n')
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "cost", "gold_passages": ["price.md"]}\n')
    env = {**os.environ, "CHATBOT_DATA_DIR": str(tmp_path / "data")}
    if command[0:2] == ["index", "eval"]:
        subprocess.run([sys.executable, "-m", "app", "index", "sync", "--config", str(config)],
                       env=env, check=True, capture_output=True)
    run = subprocess.run(
        [sys.executable, "-c", PRESSED_AS_IT_FINISHES, work,
         *[str(questions) if word == "QUESTIONS" else word for word in command],
         "--config", str(config)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "interrupted" not in run.stderr
    assert run.stderr.splitlines()[-1] == (
        "note: the work finished before the Ctrl-C could stop it; its result is complete")
    assert run.stdout  # the report, as without the press


def test_a_ctrl_c_dropped_while_the_model_loads_stops_ask_before_it_answers(
        tiny_config) -> None:
    """Dropped while `chatbot ask` loaded its model, the press went unseen until the whole
    answer was written; now the answer does not begin."""
    run = subprocess.run(
        [sys.executable, "-c", PRESSED_AS_IT_FINISHES, "app.build.build_engine", "ask",
         "How do I index?", "--config", str(tiny_config)], capture_output=True, text=True,
        timeout=300)
    assert (run.returncode, run.stdout, run.stderr.splitlines()[-1]) == (
        1, "", "error: interrupted; no answer had begun"), run.stderr
