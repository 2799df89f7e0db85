"""A write that finds the disk full says what to run once there is room, and that depends on
the caller: ``--resume`` only where a checkpoint exists to resume from, the merge again for
``chatbot train merge``, the same sweep command for a sweep. Each case writes to a real full
disk: a 256 KB tmpfs, mounted in a user and mount namespace of a child process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

def _can_mount_a_tmpfs() -> bool:
    """Whether a child can mount a tmpfs in namespaces of its own (a container may refuse)."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--map-root-user", "--mount", "sh", "-c",
             "mount -t tmpfs -o size=64k tmpfs /mnt"]
    return subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount_a_tmpfs(),
                                reason="needs user namespaces (unshare) to mount a small tmpfs")


TESTS = Path(__file__).parent


def on_a_full_disk(tmp_path, code: str, disk: Path | None = None, size: str = "256k") -> str:
    """Run ``code`` with ``disk`` (a Path, default ``tmp_path/disk``) a tmpfs of ``size``;
    what it prints."""
    disk = disk or tmp_path / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    script = "import sys\nfrom pathlib import Path\ndisk = Path(sys.argv[1])\n" + \
        textwrap.dedent(code)
    out = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c",
         'mount -t tmpfs -o size="$4" tmpfs "$1" && exec "$2" -c "$3" "$1"', "sh", str(disk),
         sys.executable, script, size], capture_output=True, text=True, timeout=300,
        cwd=TESTS.parent, env={**os.environ, "PYTHONPATH": str(TESTS)})  # this checkout's code
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


SAVE = """
import torch
from training.errors import TrainingError
from training.train.checkpoint import atomic_save

run = disk / "runs" / "zorb"
run.mkdir(parents=True)
if {saved_before}:
    atomic_save({{"step": 2}}, run / "last.pt")
try:
    atomic_save({{"weights": torch.zeros(2**18)}}, run / "{file}")
except TrainingError as exc:
    print(exc)
"""


@pytest.mark.parametrize("file", ["last.pt", "best.pt"])
def test_a_run_that_never_saved_a_checkpoint_is_not_told_to_resume(tmp_path, file):
    """It said "then rerun with --resume", which answers "nothing to resume"."""
    said = on_a_full_disk(tmp_path, SAVE.format(saved_before=False, file=file))
    assert said == (f"disk full while writing {tmp_path}/disk/runs/zorb/{file}; free space on "
                    "that disk, then run the same command again (no checkpoint was saved yet, "
                    "so there is nothing to resume)")


def test_a_run_with_a_checkpoint_is_told_to_resume(tmp_path):
    said = on_a_full_disk(tmp_path, SAVE.format(saved_before=True, file="last.pt"))
    assert said == (f"disk full while writing {tmp_path}/disk/runs/zorb/last.pt; free space on "
                    "that disk, then rerun with --resume to continue from the last checkpoint")


def test_a_merge_is_told_to_run_the_merge_again(tmp_path, tiny_model_dir):
    """`chatbot train merge` has no --resume."""
    said = on_a_full_disk(tmp_path, f"""
        from transformers import AutoTokenizer
        from chatbot.adapters import AdapterManifest
        from lora import save_lora_adapter
        from training.errors import TrainingError
        from training.train.registry import merge_adapter

        folder = save_lora_adapter({str(tiny_model_dir)!r}, Path({str(tmp_path / 'zorb')!r}))
        AutoTokenizer.from_pretrained({str(tiny_model_dir)!r}).save_pretrained(folder)
        AdapterManifest(name="zorb", method="lora", base_model="tiny").save(folder)
        try:
            merge_adapter(folder, {str(tiny_model_dir)!r}, disk / "merged")
        except TrainingError as exc:
            print(exc)
        """)
    assert said == (f"disk full while writing {tmp_path}/disk/merged; free space on that disk "
                    "or choose an --out on another one, then run the merge again")
    assert not any((tmp_path / "disk").iterdir())


def test_a_sweep_registering_its_best_is_told_to_run_the_sweep_again(tmp_path):
    """A sweep has no --resume: its same command continues it, and registers the best."""
    said = on_a_full_disk(tmp_path, """
        import json
        from training.errors import TrainingError
        from training.train.registry import promote_adapter

        trial = disk / "adapters" / "zorb-trial-1"
        trial.mkdir(parents=True)
        (trial / "adapter_manifest.json").write_text(json.dumps({"name": "zorb-trial-1"}))
        (trial / "adapter_model.safetensors").write_bytes(b"w" * 200_000)
        try:
            promote_adapter(trial, disk / "adapters" / "zorb", {"name": "zorb"})
        except TrainingError as exc:
            print(exc)
        """)
    assert said == (f"disk full while writing {tmp_path}/disk/adapters/zorb; free space on that "
                    "disk, then run the same sweep command again: its finished trials are kept "
                    "and the best one is registered")


def test_a_sweeps_trial_is_not_told_to_resume(tmp_path, tiny_model_dir):
    """A trial's checkpoint that found the disk full said "rerun with --resume", which the
    sweep has not; the same sweep command continues it (the trial is run again)."""
    from train_support import fact_dataset

    fact_dataset(tmp_path, tiny_model_dir)
    said = on_a_full_disk(tmp_path, f"""
        from test_train_sweep import sweep_request
        from training.errors import TrainingError
        from training.train.sweep import run_sweep

        try:
            run_sweep(sweep_request(Path({str(tmp_path)!r}), {str(tiny_model_dir)!r}, 1))
        except TrainingError as exc:
            print(exc)
        """, disk=tmp_path / "runs", size="8k")
    assert said.startswith(f"disk full while writing {tmp_path}/runs/zorb-trial-0/")
    assert said.endswith("; free space on that disk, then run the same sweep command again: its "
                         "finished trials are kept and the best one is registered")
