"""Realistic documents made at run time from ../shared/data/conditionalqa (never stored here).

Each document is a random run of consecutive elements of one gov.uk page, written as Markdown
(80%), HTML (10%) or plain text (10%), so the loaders and the heading-aware chunker all work.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from shared_data import SHARED

DATA = SHARED / "conditionalqa"
_MARK = {"h1": "# ", "h2": "## ", "h3": "### ", "li": "- "}


def passages_by_doc() -> dict[str, list[dict]]:
    docs: dict[str, list[dict]] = defaultdict(list)
    with open(DATA / "passages.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            docs[row["doc_id"]].append(row)
    return docs


def write_documents(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    docs = passages_by_doc()
    names = sorted(docs)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        elements = docs[names[rng.randrange(len(names))]]
        start = rng.randrange(len(elements))
        part = elements[start:start + rng.randint(4, 40)]
        kind = rng.choices(["md", "html", "txt"], weights=[8, 1, 1])[0]
        title = f"{part[0]['title']} ({i})"
        if kind == "md":
            body = "\n\n".join(_MARK.get(p["tag"], "") + p["text"] for p in part)
            text = f"# {title}\n\n{body}\n"
        elif kind == "html":
            text = (f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
                    + "".join(p["html"] for p in part) + "</main></body></html>")
        else:
            text = f"{title}\n\n" + "\n\n".join(p["text"] for p in part) + "\n"
        path = folder / f"doc{i:04d}.{kind}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
