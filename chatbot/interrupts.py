"""Ctrl-C for long runs (training, a sweep, an eval) that is never lost.

Python raises ``KeyboardInterrupt`` wherever the main thread is when SIGINT arrives. When that
is inside a garbage-collection callback (a weakref's, a ``__del__``, common while a model
loads), Python prints "Exception ignored" and drops it, and the run goes on as if no key had
been pressed. So the handler also records the press, and each step of a long loop raises it
again (``raise_if_interrupted``).
"""

from __future__ import annotations

import signal

_pressed = False


def stop_on_ctrl_c() -> None:
    """Ctrl-C, and the web UI's Stop (SIGINT), end a long run where it can be continued from,
    even where this process inherited SIGINT ignored (started in the background: `cmd &`)."""
    global _pressed
    _pressed = False
    signal.signal(signal.SIGINT, _on_sigint)


def raise_if_interrupted() -> None:
    """Raise the ``KeyboardInterrupt`` of a Ctrl-C pressed since ``stop_on_ctrl_c``."""
    if _pressed:
        raise KeyboardInterrupt


def _on_sigint(signum: int, frame: object) -> None:
    global _pressed
    _pressed = True
    raise KeyboardInterrupt
