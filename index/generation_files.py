"""The files of an index's generations on disk: their names, which are stale, and the stamp
that tells a reader the manifest changed."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from index.manifest import IndexFiles


def file_name(kind: str, generation: int, suffix: str) -> str:
    return f"{kind}-{generation:06d}{suffix}"


def remove_stale(directory: Path, current: IndexFiles) -> None:
    """Delete other generations' files (left by earlier syncs, or by one that was killed)."""
    keep = current.names()
    for path in directory.iterdir():
        if path.name.split("-")[0] in ("faiss", "docstore", "bm25") and path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def files_of(path: Path) -> list[Path]:
    if path.is_dir():
        return [p for p in path.rglob("*") if p.is_file()]
    return [path] if path.exists() else []


def stamp(path: Path) -> tuple | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
