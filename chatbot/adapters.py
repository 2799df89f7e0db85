"""The adapter manifest: what an adapter was trained on and how.

Training writes it last, so a directory with a manifest is a finished adapter (and a variant);
the core reads it before serving the adapter and refuses one trained on another base model or
chat template.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from chatbot.errors import ModelError
from chatbot.file_cache import FileCache
from chatbot.models import same_base_model
from chatbot.variants import Variant
from index import jsonfile

ADAPTER_MANIFEST = "adapter_manifest.json"
SCHEMA_VERSION = 1
RETRAIN = "retrain the adapter with `chatbot train`"
FULL_MODEL_METHODS = ("freeze", "full")
"""Training methods that save a complete model, served on its own, not as an adapter."""
LORA_CONFIG, LORA_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
"""The files peft reads a LoRA adapter from."""


@dataclass(frozen=True)
class AdapterManifest:
    """``adapter_manifest.json``; ``schema_version`` is stored as ``format``."""

    name: str | None = None
    method: str | None = None
    base_model: str | None = None
    base_model_fingerprint: str | None = None
    chat_template_hash: str | None = None
    template: str | None = None
    """The prompt template the training examples were rendered with."""
    template_hash: str | None = None
    dataset: dict = field(default_factory=dict)
    hyperparameters: dict = field(default_factory=dict)
    best_step: int | None = None
    metrics: dict = field(default_factory=dict)
    created_at: str | None = None
    versions: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def load(cls, adapter_dir: Path) -> AdapterManifest:
        """The manifest of ``adapter_dir`` (parsed once, again when it changes), or an error
        naming what is missing or wrong."""
        if not adapter_dir.is_dir():
            raise ModelError(f"adapter directory {adapter_dir} does not exist; train one with "
                             f"`chatbot train --data DATASET --name {adapter_dir.name}`")
        path = adapter_dir / ADAPTER_MANIFEST
        try:
            return _manifests.get(path)
        except FileNotFoundError:
            raise ModelError(f"{path} is missing: {adapter_dir} was not written by "
                             "`chatbot train`, or its training did not finish") from None

    @classmethod
    def from_file(cls, path: Path) -> AdapterManifest:
        data = jsonfile.read(path, ModelError, RETRAIN)
        version = data.pop("format", 1)  # manifests written before versions were recorded: 1
        jsonfile.check_version(path, version, SCHEMA_VERSION, ModelError, RETRAIN)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def variant(self, name: str, adapter_dir: Path, base_model: str, template: str,
                retrieval: bool = True, k: int | None = None) -> Variant:
        """The trained run in ``adapter_dir`` as a variant: a LoRA adapter on ``base_model``,
        or the complete model that freeze and full training save, served as the model."""
        if self.method in FULL_MODEL_METHODS:
            return Variant(name, str(adapter_dir), template, retrieval, k)
        return Variant(name, base_model, template, retrieval, k, adapter_dir)

    def save(self, adapter_dir: Path) -> Path:
        path = adapter_dir / ADAPTER_MANIFEST
        record = asdict(self)
        jsonfile.write_atomic(path, {"format": record.pop("schema_version"), **record})
        return path

    def check_serves_on(self, adapter_dir: Path, base_model: str, base_fingerprint: str,
                        template_hash: str,
                        remedy: str = "serve it on its own base model or retrain it") -> None:
        """Refuse to use the adapter on another base model or chat template than it was
        trained on."""
        if not same_base_model(self.base_model_fingerprint, base_fingerprint):
            raise ModelError(
                f"adapter {adapter_dir} was trained on base model {self.base_model!r} "
                f"(fingerprint {self.base_model_fingerprint}), not on {base_model!r} "
                f"(fingerprint {base_fingerprint}); {remedy}")
        if self.chat_template_hash != template_hash:
            raise ModelError(
                f"adapter {adapter_dir} was trained with another chat template "
                f"({self.chat_template_hash} vs {template_hash}); retrain it on this "
                "model's tokenizer")


_manifests = FileCache(AdapterManifest.from_file)
"""Every message to an adapter variant checks its manifest: parsed once, again after a retrain."""


def check_lora_files(adapter_dir: Path) -> None:
    """Refuse a LoRA adapter folder saved or copied only in part, naming the file: peft takes a
    folder without weights for a model hub id, and a cut-short file fails deep in safetensors."""
    import json

    from safetensors import SafetensorError, safe_open

    for name in (LORA_CONFIG, LORA_WEIGHTS):
        if not (adapter_dir / name).is_file():
            raise incomplete_adapter(adapter_dir, f"{name} is missing")
    try:
        json.loads((adapter_dir / LORA_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise incomplete_adapter(adapter_dir, f"{LORA_CONFIG} cannot be read ({exc})") from None
    try:
        with safe_open(str(adapter_dir / LORA_WEIGHTS), framework="pt"):
            pass
    except (OSError, SafetensorError) as exc:
        raise incomplete_adapter(adapter_dir, f"{LORA_WEIGHTS} cannot be read ({exc})") from None


def servable_manifest(adapter_dir: Path) -> AdapterManifest:
    """The manifest of an adapter folder whole enough to serve: a LoRA adapter's own files are
    checked too, so the variants served and ``chatbot adapters list`` agree."""
    manifest = AdapterManifest.load(adapter_dir)
    if manifest.method not in FULL_MODEL_METHODS:
        check_lora_files(adapter_dir)
    return manifest


def incomplete_adapter(adapter_dir: Path, problem: str) -> ModelError:
    """The error for an adapter folder with a file missing or unreadable (``problem``)."""
    return ModelError(f"adapter {adapter_dir} is incomplete: {problem}; copy the whole folder "
                      f"again or {RETRAIN}")


def registered_adapters(adapters_root: Path) -> dict[str, Path]:
    """Adapter directories that carry a manifest, by name; not the hidden ones a training run
    stages its adapter in (``.NAME.partial``) before it is registered."""
    if not adapters_root.is_dir():
        return {}
    return {path.parent.name: path.parent
            for path in sorted(adapters_root.glob(f"*/{ADAPTER_MANIFEST}"))
            if not path.parent.name.startswith(".")}


def could_be_registered(name: str) -> bool:
    """Whether ``registered_adapters`` could ever list ``name``: a folder name, not hidden, of
    at most 255 characters, without "/" or NUL. Any other name needs no look in the folder."""
    return (0 < len(name) <= 255 and not name.startswith(".")
            and "/" not in name and "\0" not in name)


@contextlib.contextmanager
def peft_notice_muted():
    """Around peft's adapter loads and LoRA wraps, and TRL's training: they ask transformers
    with a name transformers is retiring, whose FutureWarning would reach the user's output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated",
                                FutureWarning)
        yield
