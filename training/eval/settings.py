"""What an offline evaluation needs from the bot, as one record.

``app.build.eval_settings`` fills it from the config; the evaluation reads nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chatbot.engine import Engine
from chatbot.indexing import EmbedderSpec
from chatbot.variants import Variant
from index.embed import Embedder


@dataclass(frozen=True)
class EvalSettings:
    data_dir: Path
    """Relative held-out files and dataset names are found here; reports go to ``evals/``."""
    index_dir: Path
    retrieval: Mapping[str, object]
    """The retrieval settings answers depend on: part of the cached answers' key."""
    chat_model: str
    """Base model of a staged adapter that the training gate evaluates."""
    embedder: EmbedderSpec
    """One copy serves retrieval and the semantic-similarity metric."""
    engine: Callable[[Embedder | None, Mapping[str, Variant]], Engine]
    """The users' engine (same retrieval, templates, filters) minus the conversation log, with
    extra variants added: eval answers are not conversations to train on."""
    variants: Mapping[str, Variant] = field(default_factory=dict)
    """The configured variants; a gate's candidate takes its baseline's template and retrieval."""
    model_base_dir: Path | None = None
    """Where a relative model path is found: a local model's weights key the cached answers."""
