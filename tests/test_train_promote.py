"""A sweep's best trial replaces the sweep's earlier best adapter: a process killed at any point
of the replacement leaves the earlier best whole under its name (or the new one whole), and the
next run puts right what it left."""

from __future__ import annotations

import json
import os
import signal
import shutil
from pathlib import Path

from chatbot.adapters import registered_adapters
from training.train.registry import discard_adapter, promote_adapter, recover_replacement

FILE_OPS = ("replace", "rename", "unlink", "rmdir")
"""The calls a replacement and a deletion are made of; the child is killed at the k-th one."""


def adapter(folder: Path, name: str, weights: bytes) -> dict[str, bytes]:
    folder.mkdir(parents=True)
    files = {"adapter_config.json": b'{"r": 4}', "adapter_model.safetensors": weights,
             "tokenizer.json": weights[::-1],
             "adapter_manifest.json": json.dumps({"format": 1, "name": name, "method": "lora",
                                                  "base_model": "tiny"}).encode()}
    for file, content in files.items():
        (folder / file).write_bytes(content)
    return files


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def without_manifest(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: content for name, content in files.items() if name != "adapter_manifest.json"}


def promote_killed_at(k: int, source: Path, target: Path) -> bool:
    """Promote in a forked process that kills itself with SIGKILL as its k-th file operation
    begins; whether it was killed (False: the promotion ran to its end)."""
    pid = os.fork()
    if pid == 0:
        calls = [0]

        def killing(real):
            def call(*args, **kwargs):
                calls[0] += 1
                if calls[0] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return call

        for op in FILE_OPS:
            setattr(os, op, killing(getattr(os, op)))
        try:  # then the sweep deletes the trial, as it does unless --keep-trials
            promote_adapter(source, target, {"name": "zorb", "trial": 2})
            discard_adapter(source)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def test_a_replacement_killed_at_any_point_never_leaves_a_half_adapter(tmp_path):
    """The earlier best was deleted (rmtree) before the new one was renamed into place: a kill
    in between left a half-deleted adapter, or none, and its trial was long gone."""
    k, killed = 0, True
    while killed:
        k += 1
        root = tmp_path / str(k) / "adapters"
        earlier = adapter(root / "zorb", "zorb", b"earlier weights")
        new = without_manifest(adapter(root / "zorb-trial-2", "zorb-trial-2", b"new weights"))
        killed = promote_killed_at(k, root / "zorb-trial-2", root / "zorb")
        served = registered_adapters(root).get("zorb")
        if served is not None:  # what a server reading the folder now would load
            assert without_manifest(contents(served)) in (without_manifest(earlier), new), k
        else:  # only between two renames: the earlier best whole under its hidden name
            assert contents(root / ".zorb.replaced") == earlier, k

        recover_replacement(root / "zorb")  # the next run of the sweep
        if (root / "zorb-trial-2").is_dir():
            promote_adapter(root / "zorb-trial-2", root / "zorb", {"name": "zorb"})
        discard_adapter(root / "zorb-trial-2")
        assert without_manifest(contents(root / "zorb")) == new, k
        assert json.loads(contents(root / "zorb")["adapter_manifest.json"])["name"] == "zorb"
        assert sorted(p.name for p in root.iterdir()) == ["zorb"], k
        shutil.rmtree(tmp_path / str(k))
    assert k > 5  # the kills reached the end of the replacement


def test_a_registered_adapter_with_its_run_folder_left_is_not_to_be_deleted(tmp_path):
    """A run killed after registering its adapter, before deleting its checkpoints: --resume
    said "adapter already exists ...; choose another --name or delete that directory", which
    deletes the finished adapter to redo the end of its run."""
    import pytest

    from training.errors import TrainingError
    from training.train.registry import check_new_adapter

    adapter(tmp_path / "adapters/late", "late", b"weights")
    (tmp_path / "runs/late").mkdir(parents=True)
    (tmp_path / "runs/late/last.pt").write_bytes(b"checkpoint")
    with pytest.raises(TrainingError) as refused:
        check_new_adapter(tmp_path, "late")
    assert str(refused.value) == (
        f"adapter 'late' is already registered at {tmp_path}/adapters/late: its run finished, "
        f"and {tmp_path}/runs/late holds checkpoints that its end did not get to delete; delete "
        "that run folder, or choose another --name")
    assert (tmp_path / "adapters/late/adapter_model.safetensors").read_bytes() == b"weights"
