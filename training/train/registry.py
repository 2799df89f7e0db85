"""Register a trained adapter as a variant, atomically; merge an adapter into a full model.

``<data_dir>/adapters/NAME/`` holds the weights (a peft adapter, or a full model for the
``freeze`` and ``full`` methods), ``adapter_manifest.json``, ``metrics.jsonl`` and ``loss.png``.
Everything is written into ``adapters/.NAME.partial`` and renamed at the end, so a failed run
never leaves a directory with a manifest (which would make it a variant). A sweep's best
replaces its earlier one by two renames, the earlier one set aside in ``.NAME.replaced`` until
the new one is in place (``promote_adapter``).

    chatbot train merge ADAPTER --out DIR
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from chatbot.adapters import ADAPTER_MANIFEST, AdapterManifest, check_lora_files, \
    incomplete_adapter, peft_notice_muted
from chatbot.paths import DataPaths
from training.train.checkpoint import disk_error, has_checkpoint, is_write_error, \
    rerun_advice
from training.errors import TrainingError

VERSIONED = ("torch", "transformers", "peft", "datasets", "chatbot-builder")
SWEEP_AGAIN = ("run the same sweep command again: its finished trials are kept and the best one "
               "is registered")
"""What a sweep stopped by a failed write says to run (a sweep has no ``--resume``)."""


def check_new_adapter(data_dir: Path, name: str) -> Path:
    """The final directory of a new adapter; errors for a bad or taken name, or no write access."""
    paths = DataPaths(data_dir)
    target = paths.adapter(name)
    if (target / ADAPTER_MANIFEST).is_file() and has_checkpoint(paths.run(name)):
        raise TrainingError(f"adapter {name!r} is already registered at {target}: its run "
                            f"finished, and {paths.run(name)} holds checkpoints that its end "
                            "did not get to delete; delete that run folder, or choose another "
                            "--name")
    if target.exists():
        raise TrainingError(f"adapter {name!r} already exists at {target}; choose another "
                            "--name or delete that directory")
    probe_writable(paths.adapters, paths.run(name))
    return target


def probe_writable(folder: Path, run_dir: Path | None = None) -> None:
    """Create ``folder`` and write a file in it, so a read-only disk fails before training.
    Each process writes a probe of its own: the processes of one ``torchrun`` probe at once.
    ``run_dir`` (default: ``folder``) is the run whose checkpoint decides the advice."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-") as probe:
            probe.write(b"ok")
    except OSError as exc:
        raise disk_error(folder, exc, rerun_advice(run_dir or folder)) from None


def staging_dir(target: Path) -> Path:
    """The hidden folder ``target`` is written in before it is renamed into place; a process
    killed while writing leaves it, and the next write of ``target`` clears it."""
    return target.with_name(f".{target.name}.partial")


def publish(target: Path, save_weights, manifest: AdapterManifest, metrics_path: Path,
            check=None) -> Path:
    """Write weights, manifest, metrics and plot into a staging dir, then rename it to ``target``.

    ``save_weights(dir)`` writes the model files; ``check(dir)``, if given, may refuse the
    staged adapter by raising (the evaluation gate). Any failure removes the staging dir.
    """
    staging = staging_dir(target)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        save_weights(staging)
        shutil.copyfile(metrics_path, staging / "metrics.jsonl")
        plot_losses(staging / "metrics.jsonl", staging / "loss.png")
        manifest.save(staging)
        if check is not None:
            check(staging)
        os.replace(staging, target)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if is_write_error(exc):  # the run's checkpoints are kept until it is registered
            raise disk_error(target, exc, rerun_advice(metrics_path.parent)) from None
        raise
    return target


def promote_adapter(source: Path, target: Path, sweep: dict) -> Path:
    """Register the adapter in ``source`` (a sweep's best trial) as ``target``: same weights,
    the manifest renamed and the sweep recorded in its metrics. ``target`` may be this sweep's
    earlier best, which stays whole under its name until the new one is complete; a process
    killed on the way leaves what ``recover_replacement`` puts right."""
    recover_replacement(target)
    staging = staging_dir(target)
    try:  # the manifest last: a staged copy is never mistaken for a whole one
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns(ADAPTER_MANIFEST))
        manifest = AdapterManifest.from_file(source / ADAPTER_MANIFEST)
        replace(manifest, name=target.name,
                metrics={**manifest.metrics, "sweep": sweep}).save(staging)
        if target.exists():
            os.replace(target, replaced_dir(target))
        os.replace(staging, target)
    except BaseException as exc:  # Ctrl-C too: the earlier best goes back under its name
        recover_replacement(target)
        if isinstance(exc, OSError):
            raise disk_error(target, exc, SWEEP_AGAIN) from None
        raise
    shutil.rmtree(replaced_dir(target), ignore_errors=True)
    return target


def replaced_dir(target: Path) -> Path:
    """Where ``target``'s earlier version waits while its replacement is renamed into place."""
    return target.with_name(f".{target.name}.replaced")


def recover_replacement(target: Path) -> None:
    """Put right what a replacement of ``target`` cut short left: the earlier version goes back
    under its name if the new one never got there, else its leftover copy goes; a staged new
    one, maybe half-written, goes too (its source is still there to promote again)."""
    earlier = replaced_dir(target)
    if earlier.exists():
        if target.exists():
            shutil.rmtree(earlier, ignore_errors=True)
        else:
            os.replace(earlier, target)
    shutil.rmtree(staging_dir(target), ignore_errors=True)


def discard_adapter(folder: Path) -> None:
    """Delete an adapter so that no one ever sees it half-deleted: it leaves the registry in one
    rename, to its hidden staging name (which the next write of that name clears), and only
    then are its files deleted."""
    hidden = staging_dir(folder)
    shutil.rmtree(hidden, ignore_errors=True)
    try:
        os.replace(folder, hidden)
    except FileNotFoundError:
        return
    shutil.rmtree(hidden, ignore_errors=True)


def build_manifest(**fields) -> AdapterManifest:
    """The adapter manifest: the given fields plus the time and the library versions."""
    return AdapterManifest(**fields,
                           created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           versions=library_versions())


def library_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def plot_losses(metrics_path: Path, out: Path) -> None:
    """``loss.png``: training loss per step and validation loss at each evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    figure, axis = plt.subplots(figsize=(7, 4))
    if train:
        axis.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        axis.plot(*zip(*val), "o-", label="validation loss")
    axis.set_xlabel("step")
    axis.set_ylabel("loss per supervised token")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def merge_adapter(adapter_dir: Path, base_dir: str, out: Path) -> Path:
    """Fold a LoRA adapter into its base model and save a standalone model in ``out``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = AdapterManifest.load(adapter_dir)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out} is a file; choose an empty or new --out directory")
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} is not empty; choose an empty or new --out directory")
    if manifest.method in ("freeze", "full"):  # lora, dpo and kto runs leave LoRA adapters
        raise TrainingError(f"adapter {adapter_dir.name!r} was trained with method "
                            f"{manifest.method!r} and is already a full model; use "
                            f"{adapter_dir} directly")
    check_lora_files(adapter_dir)
    try:  # read before the merge writes anything
        tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    except (OSError, ValueError) as exc:
        raise incomplete_adapter(adapter_dir, f"its tokenizer cannot be read ({exc})") from None
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with peft_notice_muted():
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    staging = staging_dir(out)
    shutil.rmtree(staging, ignore_errors=True)
    try:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.copyfile(adapter_dir / ADAPTER_MANIFEST, staging / "merged_from.json")
        if out.exists():
            out.rmdir()
        os.replace(staging, out)
    except BaseException as exc:  # Ctrl-C too: a half-written model is never left behind
        shutil.rmtree(staging, ignore_errors=True)
        if is_write_error(exc):  # no --resume: the merge starts over
            raise disk_error(out, exc, "run the merge again",
                             room="free space on that disk or choose an --out on another one",
                             folder=str(out.parent)) from None
        raise
    return out
