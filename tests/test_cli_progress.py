"""The progress bar of `chatbot index sync`, `data synth`, `index eval` and `eval`, off a
terminal and on one."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from app.commands.progress import ProgressBar


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_the_bar_is_whole_lines_at_each_tenth_and_sparse_details(capsys):
    """A sync logged to a file (CI) wrote every state of tqdm's bar joined by carriage returns:
    one line thousands of characters long. Off a terminal it is whole lines: the count at each
    tenth and the end, and the embedding detail at most once every ten seconds."""
    clock = Clock()
    with ProgressBar("file", clock=clock) as bar:
        bar.count(0, 20)
        bar.count(1, 20)  # within the first two seconds: nothing, as on a terminal
        clock.now = 3
        for done in range(2, 6):
            bar.count(done, 20)
        bar.detail("embedding 256/1843 chunks")
        clock.now = 8
        bar.detail("embedding 512/1843 chunks")  # five seconds on: not yet
        clock.now = 13
        bar.detail("embedding 768/1843 chunks")
        for done in range(6, 21):
            bar.count(done, 20)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == [
        "files: 2/20", "files: 4/20", "files: 5/20, embedding 256/1843 chunks",
        "files: 5/20, embedding 768/1843 chunks", *(f"files: {n}/20" for n in range(6, 21, 2))]


def test_off_a_terminal_the_first_count_shown_is_a_line_too(capsys):
    """A log of an eval whose first question came after the model loaded began with its count
    and total, not only a tenth of the way on."""
    clock = Clock()
    with ProgressBar("question", clock=clock) as bar:
        clock.now = 9
        for done in range(1, 26):
            bar.count(done, 25)
    assert capsys.readouterr().err.splitlines() == [
        f"questions: {done}/25" for done in (1, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25)]


def test_a_short_run_or_a_disabled_bar_prints_nothing(capsys):
    for bar in (ProgressBar("file", clock=Clock()), ProgressBar("file", delay=0, disable=True)):
        with bar:
            bar.count(1, 1)
            bar.detail("embedding 1/1 chunks")
    assert capsys.readouterr().err == ""


def test_on_a_terminal_the_bar_is_rewritten_in_place():
    reader, writer = pty.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # 80 columns
    script = ("from app.commands.progress import ProgressBar\n"
              "with ProgressBar('file', delay=0) as bar:\n"
              "    bar.count(0, 3); bar.count(3, 3)")
    subprocess.run([sys.executable, "-c", script], stderr=writer, check=True)
    os.close(writer)
    shown = os.read(reader, 1000).decode()
    os.close(reader)
    assert shown.startswith("\r") and shown.count("\n") == 1 and shown.endswith("\n")
    assert "3/3" in shown.split("\r")[-2], shown
