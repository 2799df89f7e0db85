"""Where the benchmark data sets are: ``$BENCH_SHARED_DATA``, else the nearest ``shared/data``
beside a parent of this checkout. They are read at run time and never copied here."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data() -> Path:
    if os.environ.get("BENCH_SHARED_DATA"):
        return Path(os.environ["BENCH_SHARED_DATA"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return Path("../shared/data")


SHARED = shared_data()
