"""Which process writes a pending answer, and whether it still does: an answer whose writer is
gone (a killed server) is closed as interrupted when the log is next opened."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _started(pid: int) -> str | None:
    """When process ``pid`` started, as this boot's clock ticks (Linux's /proc); else None."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        return f"{boot}.{Path(f'/proc/{pid}/stat').read_text().rpartition(')')[2].split()[19]}"
    except (OSError, IndexError):
        return None


WRITER = ":".join(filter(None, (socket.gethostname(), str(os.getpid()), _started(os.getpid()))))
"""This process, as recorded on the answers it is writing: host, pid and start, since a
restarted container's server gets the same host and pid (often 1) as the one that died."""


def writer_alive(writer: str | None) -> bool:
    """Whether the process that wrote a pending answer may still be writing it: a process on
    another host cannot be checked, so it counts as alive."""
    host, pid, started = [*(writer or "").split(":", 2), "", ""][:3]
    if host != socket.gethostname() or not pid.isdigit():
        return bool(writer) and host != socket.gethostname()
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return not started or _started(int(pid)) in (started, None)
