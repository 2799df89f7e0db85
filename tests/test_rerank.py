"""Cross-encoder reranking on a tiny BERT cross-encoder built here (random weights, no
download): the order follows the cross-encoder's scores, ``k`` hits come back, the config
turns it on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.build import bot_index
from chatbot.config_file import load_config
from chatbot.indexing import open_retriever, sync_paths
from index.errors import IndexingError
from index.rerank import CrossEncoderScorer, RerankingRetriever, rerank
from index.types import Chunk, Hit

WORDS = ("the pump needs fresh oil every week boiler pressure drops below one bar prune roses "
         "in late winter mow lawn alarm code reset hold red button how do i what when").split()
TEXTS = ["The pump needs fresh oil every week.", "Bleed the radiators when the boiler "
         "pressure drops below one bar.", "Prune roses in late winter.", "Mow the lawn weekly.",
         "Alarm code reset: hold the red button."]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with one output (a cross-encoder's shape) and a WordPiece vocabulary."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    target = tmp_path_factory.mktemp("tiny-cross-encoder")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters,
             *(f"##{c}" for c in letters), *".,:?", *sorted(set(WORDS))]
    (target / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(str(target / "vocab.txt"), model_max_length=128)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        num_labels=1)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def scorer(cross_encoder_dir: Path) -> CrossEncoderScorer:
    return CrossEncoderScorer(str(cross_encoder_dir), device="cpu")


def hits() -> list[Hit]:
    return [Hit(Chunk(f"c{n}", f"docs/{n}.md", text, "", "h"), 1.0 / n, n)
            for n, text in enumerate(TEXTS, start=1)]


def test_hits_are_reordered_by_the_cross_encoders_scores(scorer: CrossEncoderScorer) -> None:
    query = "how do i reset the alarm code"
    expected = scorer.model.predict([(query, text) for text in TEXTS]).tolist()
    reranked = rerank(query, hits(), scorer, k=3)
    by_score = sorted(range(len(TEXTS)), key=lambda i: expected[i], reverse=True)
    assert [h.text for h in reranked] == [TEXTS[i] for i in by_score[:3]]
    assert [h.rank for h in reranked] == [1, 2, 3]
    assert [h.score for h in reranked] == pytest.approx(sorted(expected, reverse=True)[:3])
    first = by_score[0]
    assert reranked[0].scores == {"search": pytest.approx(1.0 / (first + 1)),
                                  "rerank": pytest.approx(expected[first])}


def test_k_results_come_back_or_all_when_fewer(scorer: CrossEncoderScorer) -> None:
    assert len(rerank("pump oil", hits(), scorer, k=2)) == 2
    assert len(rerank("pump oil", hits(), scorer, k=9)) == len(TEXTS)
    assert rerank("pump oil", [], scorer, k=3) == []


class FixedScores:
    """Scores a text by its position in a preferred list: the reranker's order is known."""

    def __init__(self, preferred: list[str]) -> None:
        self.preferred = preferred
        self.asked: list[list[str]] = []

    def scores(self, query: str, texts: list[str]) -> list[float]:
        self.asked.append(texts)
        return [-float(self.preferred.index(t)) if t in self.preferred else -99.0 for t in texts]


class Candidates:
    def __init__(self) -> None:
        self.k = 2
        self.asked: list[int] = []

    def search(self, query, k=None, mode=None, source_glob=None) -> list[Hit]:
        self.asked.append(k)
        return hits()[:k]


def test_the_reranking_retriever_reads_the_candidates_and_keeps_k() -> None:
    inner, scores = Candidates(), FixedScores([TEXTS[3], TEXTS[0]])
    found = RerankingRetriever(inner, scores, candidates=4).search("q")
    assert inner.asked == [4] and scores.asked == [TEXTS[:4]]
    assert [h.text for h in found] == [TEXTS[3], TEXTS[0]]
    RerankingRetriever(inner, scores, candidates=4).search("q", k=5)
    assert inner.asked[-1] == 5  # never fewer candidates than the hits asked for


def test_the_config_turns_reranking_on(tmp_path: Path, cross_encoder_dir: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n, text in enumerate(TEXTS):
        (docs / f"{n}.txt").write_text(text)
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump({
        "models": {"embedder": "hash:256", "device": "cpu"}, "index": {"paths": [str(docs)]},
        "retrieval": {"k": 2, "min_score": None,
                      "rerank": {"model": str(cross_encoder_dir), "candidates": 5}}}))
    index = bot_index(load_config(path))
    sync_paths(index)
    retriever = open_retriever(index)
    assert isinstance(retriever, RerankingRetriever) and retriever.candidates == 5
    found = retriever.search("alarm code")
    assert len(found) == 2 and all("rerank" in h.scores for h in found)
    assert found[0].score >= found[1].score


def test_a_cross_encoder_not_on_this_machine_is_a_clear_error() -> None:
    scorer = CrossEncoderScorer("nobody-here/no-such-cross-encoder", device="cpu")
    with pytest.raises(IndexingError, match="nothing is downloaded while answering"):
        scorer.scores("q", ["text"])


def test_a_folder_that_holds_no_model_is_a_clear_error(tmp_path: Path) -> None:
    """An empty folder, or one whose config.json names no model type, was a traceback."""
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text("{}")
    for folder in (tmp_path, tmp_path / "odd"):
        with pytest.raises(IndexingError, match=f"cross-encoder '{folder}' could not be loaded"):
            CrossEncoderScorer(str(folder), device="cpu").scores("q", ["text"])


def test_a_model_that_is_no_reranker_is_refused_by_name(tmp_path: Path,
                                                        cross_encoder_dir: Path) -> None:
    """An embedder would load with a random scoring head and shuffle the passages."""
    from transformers import AutoConfig, BertConfig, BertModel

    embedder = tmp_path / "embedder"
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=1, intermediate_size=16)).save_pretrained(embedder)
    with pytest.raises(IndexingError, match="is not a cross-encoder: it is a BertModel"):
        CrossEncoderScorer(str(embedder), device="cpu").scores("q", ["text"])
    config = AutoConfig.from_pretrained(cross_encoder_dir)
    config.num_labels = 2
    config.save_pretrained(cross_encoder_dir.parent / "two-labels")
    for name in ("vocab.txt", "model.safetensors", "tokenizer_config.json"):
        (cross_encoder_dir.parent / "two-labels" / name).write_bytes(
            (cross_encoder_dir / name).read_bytes())
    with pytest.raises(IndexingError, match="gives 2 scores a pair"):
        CrossEncoderScorer(str(cross_encoder_dir.parent / "two-labels")).scores("q", ["text"])
