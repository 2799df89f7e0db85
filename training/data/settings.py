"""What a dataset build needs from the bot, as one flat record.

``app.build.data_settings`` fills it from the config; the build steps read nothing else, so they
run (and are tested) without a bot config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.data.steps import CurateOptions
from training.data.transcripts import QAFields


@dataclass(frozen=True)
class DataSettings:
    datasets_root: Path
    """Where datasets live: ``<data_dir>/datasets``."""
    log_path: Path
    """The conversation log that ``--from logs`` reads."""
    bot_name: str
    chat_model: str
    """The chat model as configured; its tokenizer measures lengths."""
    model_base_dir: Path
    """Where a relative chat model directory is found (the config's folder)."""
    template: str
    """Prompt template that renders imported transcripts: a name or a resolved ``.j2`` path."""
    variant_templates: dict[str, str] = field(default_factory=dict)
    """Per variant, its template (name or resolved path): a logged answer is rendered with the
    template of the variant that gave it, or the default variant's when that one is unknown."""
    default_variant_template: str = "rag"
    options: CurateOptions = field(default_factory=CurateOptions)
    """Selection, PII scrubbing, quality thresholds, dedupe and split of the curation steps."""
    qa_fields: QAFields = field(default_factory=QAFields)
    render_with_template: bool = True
    log_sources: bool = True
