"""What a synthesis run needs, as flat records: ``app.commands.data_synth`` fills them from the
config, so the run (and its tests) read no config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatbot.attribution import Attributor
from chatbot.engine import Engine
from chatbot.source_names import SourceNames
from training.data.settings import DataSettings
from training.errors import DataError


@dataclass(frozen=True)
class SynthRequest:
    """One ``chatbot data synth`` invocation."""

    name: str
    teacher: str
    """The variant that writes questions and answers (a big remote model is the intended use)."""
    n: int = 500
    """Questions asked for in all: ``n / questions_per_chunk`` chunks are sampled."""
    seed: int = 1234
    questions_per_chunk: int = 3
    test_share: float = 0.2
    """Share of the documents whose questions form the test (validation) split."""
    overwrite: bool = False

    def check(self) -> None:
        if self.n < 1 or self.questions_per_chunk < 1:
            raise DataError("--n and --questions-per-chunk must be at least 1")
        if not 0 < self.test_share < 1:
            raise DataError(f"--test-share {self.test_share} must be between 0 and 1 "
                            "(e.g. 0.2: a fifth of the documents are kept for testing)")


@dataclass(frozen=True)
class SynthSettings:
    data: DataSettings
    """Where datasets go, the serving template, the chat model, curation and split settings."""
    index_dir: Path
    source_names: SourceNames
    """How the bot names its documents (``BotIndex.names``), for the prompts it is trained on."""
    engine: Engine
    """The bot's engine without its log: the teacher's generator and the bot's search."""
    attributor: Attributor
    """The chat's attribution: an answer must be supported by its chunk to be kept."""
    k: int
    """Passages in each training prompt (the serving variant's ``k``)."""
