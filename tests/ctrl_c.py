"""Ctrl-C of a real ``chatbot`` command: started in a subprocess, interrupted once it has begun.

A run that goes on after the SIGINT is aborted with ``faulthandler`` on, so the failure shows
where each of its threads was, not only that it timed out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable

import pytest


def started(args: list[str], in_background: bool = False, **env: str) -> subprocess.Popen:
    """``python -m app ARGS``; ``in_background`` as a shell's ``cmd &`` starts it (SIGINT
    ignored, which the command must undo to be stopped at all)."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1", **env},
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if in_background
        else None)


def ctrl_c_once(process: subprocess.Popen, begun: Callable[[], bool],
                timeout_s: float = 300) -> str:
    """Wait until ``begun()``, send one SIGINT, and return the process's stderr once it ends."""
    deadline = time.monotonic() + timeout_s
    while not begun():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"it had not begun after {timeout_s} s"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=timeout_s)[1]
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        stderr = process.communicate()[1]
        pytest.fail(f"still running {timeout_s} s after Ctrl-C; its stderr ends:\n"
                    f"{stderr[-8000:]}")
