"""Cross-encoder reranking latency on this machine: ms per question for N candidates.

No reranker ships with the project, so the model is one of ms-marco-MiniLM-L-6-v2's shape
(BERT, 6 layers, hidden 384, 12 heads, 512 positions, one output) with random weights and
MiniLM's uncased WordPiece tokenizer: the same work per pair as the real model. The candidates
are the bot's own hybrid hits over the user guide (docs/, 200-token chunks), ten questions.

- search: the bot's retriever finding the candidates (MiniLM query embedding, dense + BM25);
- raw forward: the same pairs through the tokenizer and one ``model(**batch)`` call
  (the baseline: what any cross-encoder costs);
- rerank: ``RerankingRetriever``'s scorer (sentence-transformers' ``CrossEncoder.predict``).

    python benchmarks/bench_rerank.py [--candidates 10 20 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chat_bench_bot import ROOT, embedded_config  # noqa: E402

QUESTIONS = [
    "How do I index my documents?",
    "What happens when I sync a folder again after editing one file?",
    "How do I fine-tune the model on our conversations?",
    "What does an A/B test compare, and how do I read its result?",
    "How do I give feedback on an answer?",
    "Why is the first answer slow, and what can I do about it?",
    "How do I protect the API with a key?",
    "Which file formats can be indexed?",
    "How do I resume an interrupted training run?",
    "Where is the model cache directory?",
]


def same_shape_cross_encoder(folder: Path) -> Path:
    """ms-marco-MiniLM-L-6-v2's architecture, random weights, MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from chatbot.config import EMBEDDED_EMBEDDER
    from chatbot.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_EMBEDDER))
    tokenizer.model_max_length = 512
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=384, num_hidden_layers=6,
                        num_attention_heads=12, intermediate_size=1536,
                        max_position_embeddings=512, num_labels=1)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def timed(work, repeats: int) -> float:
    """Best of ``repeats`` wall times of ``work()``, in ms (shared machines are noisy)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def raw_forward(model, tokenizer, query: str, texts: list[str]) -> None:
    import torch

    batch = tokenizer([query] * len(texts), texts, padding=True, truncation="longest_first",
                      max_length=512, return_tensors="pt")
    with torch.inference_mode():
        model(**batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from app.build import bot_index
    from chatbot.indexing import open_retriever, sync_paths
    from index.rerank import CrossEncoderScorer

    tmp = Path(tempfile.mkdtemp(prefix="bench-rerank-"))
    config = embedded_config(None, tmp / "bot")
    config.retrieval.min_score = None  # always n candidates
    sync_paths(bot_index(config), [ROOT / "docs"])
    retriever = open_retriever(bot_index(config))
    folder = same_shape_cross_encoder(tmp / "cross-encoder")
    scorer = CrossEncoderScorer(str(folder), device="cpu")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    retriever.search(QUESTIONS[0], k=30)  # loads the embedder
    scorer.scores(QUESTIONS[0], ["warm up"])  # loads the cross-encoder

    print(f"\n{len(QUESTIONS)} questions, torch threads {torch.get_num_threads()}; "
          f"median over questions of the best of {args.repeats} runs, ms per question\n")
    print("| candidates | tokens per pair | search | raw forward | rerank | rerank / raw |\n"
          "|---|---|---|---|---|---|")
    for n in args.candidates:
        search_ms, raw_ms, rerank_ms, tokens = [], [], [], []
        for query in QUESTIONS:
            search_ms.append(timed(lambda: retriever.search(query, k=n), args.repeats))
            texts = [hit.text for hit in retriever.search(query, k=n)]
            tokens += [len(tokenizer(query, t, truncation=True)["input_ids"]) for t in texts]
            raw_ms.append(timed(lambda: raw_forward(model, tokenizer, query, texts),
                                args.repeats))
            rerank_ms.append(timed(lambda: scorer.scores(query, texts), args.repeats))
        raw, rerank = statistics.median(raw_ms), statistics.median(rerank_ms)
        print(f"| {n} | {statistics.mean(tokens):.0f} | {statistics.median(search_ms):.1f} | "
              f"{raw:.0f} | {rerank:.0f} | {rerank / raw:.2f}x |")


if __name__ == "__main__":
    main()
