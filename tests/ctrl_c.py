"""Ctrl-C of a real ``chatbot`` command: started in a subprocess, interrupted once it has begun.

A run that goes on after the SIGINT is aborted with ``faulthandler`` on, so the failure shows
where each of its threads was, not only that it timed out. ``a_dropped_ctrl_c`` presses
Ctrl-C in this process where Python drops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

from chatbot.interrupts import stop_on_ctrl_c


def started(args: list[str], in_background: bool = False, stderr=subprocess.PIPE,
            **env: str) -> subprocess.Popen:
    """``python -m app ARGS``; ``in_background`` as a shell's ``cmd &`` starts it (SIGINT
    ignored, which the command must undo to be stopped at all); ``stderr`` may be a file, to
    watch the progress it shows."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args], stdout=subprocess.PIPE, stderr=stderr,
        text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1", **env},
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if in_background
        else None)


def ctrl_c_once(process: subprocess.Popen, begun: Callable[[], bool],
                timeout_s: float = 300) -> str:
    """Wait until ``begun()``, send one SIGINT, check the process ended with its one-line error,
    and return its stderr."""
    deadline = time.monotonic() + timeout_s
    while not begun():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"it had not begun after {timeout_s} s"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    try:
        stderr = process.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        stderr = process.communicate()[1]
        pytest.fail(f"still running {timeout_s} s after Ctrl-C; its stderr ends:\n"
                    f"{stderr[-8000:]}")
    # Exit status 1, the command's error. Under `python -m`, CPython ends the process by SIGINT
    # instead when the KeyboardInterrupt was raised inside code run by exec() (a dataclass
    # being built during an import), though the command handled it (the `chatbot` script
    # exits 1 then too).
    assert process.returncode in (1, -signal.SIGINT), stderr
    return stderr


@contextmanager
def a_dropped_ctrl_c() -> Iterator[None]:
    """Ctrl-C pressed, after ``stop_on_ctrl_c``, while a ``__del__`` runs: Python reports the
    ``KeyboardInterrupt`` as "Exception ignored" and goes on. The press is forgotten and
    SIGINT's handler put back after."""
    previous, hook, dropped = signal.getsignal(signal.SIGINT), sys.unraisablehook, []
    stop_on_ctrl_c()
    try:
        sys.unraisablehook = dropped.append
        try:
            _PressesCtrlCWhenCollected()
        finally:
            sys.unraisablehook = hook
        assert [report.exc_type for report in dropped] == [KeyboardInterrupt]
        yield
    finally:
        stop_on_ctrl_c()  # the press forgotten, as at the start of a run
        signal.signal(signal.SIGINT, previous)


class _PressesCtrlCWhenCollected:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler runs here, inside __del__, and ends the sleep
