"""Indexing throughput against its limit: our full sync vs. raw SentenceTransformer.encode of the
same chunks and of their sentences (``index/sentence_vectors.py``: a sync embeds both) at its
best batch size, and a re-sync of the unchanged corpus.

    .venv/bin/python benchmarks/bench_index_throughput.py [--docs 1000]

Documents are made at run time from ../shared/data/conditionalqa (see corpus_conditionalqa.py).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_conditionalqa import write_documents  # noqa: E402

from chatbot.config import BotConfig  # noqa: E402
from chatbot.models import resolve_model  # noqa: E402
from index.embed import SentenceTransformerEmbedder  # noqa: E402
from index.manifest import IndexSettings  # noqa: E402
from index.sentence_vectors import sentences_of  # noqa: E402
from index.store import Store  # noqa: E402
from index.sync import sync  # noqa: E402

NAME = "embedded:all-minilm-l6-v2"


class Timed:
    """Delegates to an embedder and adds up the seconds spent in ``encode``."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        self.name = inner.name

    def __getattr__(self, attribute):
        return getattr(self.inner, attribute)

    def encode(self, texts):
        start = time.perf_counter()
        try:
            return self.inner.encode(texts)
        finally:
            self.seconds += time.perf_counter() - start


def raw_encode(model, texts: list[str], batch_size: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one plain encode call."""
    start, start_cpu = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                 show_progress_bar=False)
    return time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="16,32,64,128")
    parser.add_argument("--sample", type=int, default=400, help="chunks for the batch-size sweep")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads; 1 keeps CPU seconds honest on a busy machine "
                             "(idle threads of a team spin and bill CPU time)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    embedder = SentenceTransformerEmbedder(resolve_model(NAME), name=NAME,
                                           batch_size=BotConfig().index.batch_size)
    embedder.encode(["warm up"] * 8)
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        write_documents(docs, args.docs)
        timed = Timed(embedder)
        store = Store.open(Path(tmp) / "ix", IndexSettings(NAME, None, 200, 30), create=True)
        start_cpu = time.process_time()
        first = sync([docs], store, timed)
        first_cpu = time.process_time() - start_cpu
        start_cpu = time.process_time()
        again = sync([docs], Store.open(Path(tmp) / "ix"), embedder)
        again_cpu = time.process_time() - start_cpu
        texts = [c.text for c in Store.open(Path(tmp) / "ix").chunks(range(1, 10**7)).values()]
    tokens = sum(embedder.count_tokens(t) for t in texts)
    sample = random.Random(0).sample(texts, min(args.sample, len(texts)))
    sweep = {b: raw_encode(embedder.model, sample, b) for b in map(int, args.batch_sizes.split(","))}
    best = min(sweep, key=lambda b: sweep[b][1])  # by CPU time: wall time on a busy machine lies
    sentences = [sentence for text in texts for sentence in sentences_of(text)]
    chunks_alone = raw_encode(embedder.model, texts, best)
    sentences_alone = raw_encode(embedder.model, sentences, best)
    raw, raw_cpu = (a + b for a, b in zip(chunks_alone, sentences_alone))
    import torch

    print(f"\n{args.docs} documents, {len(texts)} chunks, {len(sentences)} sentences, "
          f"{tokens} tokens "
          f"(mean {tokens / len(texts):.0f} tokens/chunk); sync batch size {embedder.batch_size}; "
          f"torch threads {torch.get_num_threads()}\n")
    print(f"| batch size (raw, sample of {len(sample)} chunks) | wall s | CPU s |\n|---|---|---|")
    for size, (seconds, cpu) in sweep.items():
        print(f"| {size}{' (best)' if size == best else ''} | {seconds:.1f} | {cpu:.1f} |")
    print("\n| run | wall s | CPU s | chunks/s (wall) | ratio (wall) | ratio (CPU) |")
    print("|---|---|---|---|---|---|")
    print(f"| raw encode of the chunks, batch {best} | {chunks_alone[0]:.1f} | "
          f"{chunks_alone[1]:.1f} | {len(texts) / chunks_alone[0]:.1f} | | |")
    print(f"| raw encode of their sentences, batch {best} | {sentences_alone[0]:.1f} | "
          f"{sentences_alone[1]:.1f} | | | |")
    print(f"| raw encode of both (the limit) | {raw:.1f} | {raw_cpu:.1f} | "
          f"{len(texts) / raw:.1f} | 1.00 | 1.00 |")
    print(f"| our full sync | {first.seconds:.1f} | {first_cpu:.1f} | "
          f"{first.chunks / first.seconds:.1f} | {raw / first.seconds:.2f} of the limit | "
          f"{raw_cpu / first_cpu:.2f} of the limit |")
    print(f"| of which encode | {timed.seconds:.1f} | | | "
          f"{timed.seconds / first.seconds:.2f} of the sync | |")
    print(f"| re-sync, nothing changed | {again.seconds:.2f} | {again_cpu:.2f} | | "
          f"{again.seconds / first.seconds:.3f} of the first sync | "
          f"{again_cpu / first_cpu:.3f} of the first sync |")
    assert again.embedded == 0 and first.embedded == len(texts)


if __name__ == "__main__":
    main()
