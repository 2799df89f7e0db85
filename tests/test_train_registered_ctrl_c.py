"""A Ctrl-C that comes once the adapter is registered, while the run's checkpoints are being
deleted, is too late to stop anything: the command ends as a finished run, not as one to resume
(whose --resume would answer "adapter already exists ... delete that directory")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from train_support import fact_dataset, make_tiny_model

PRESS_AS_CHECKPOINTS_GO = """
import os, shutil, signal, sys
real, pressed = shutil.rmtree, []

def rmtree(path, *args, **kwargs):  # the run folder goes only once its adapter is registered
    if Path(path).parent.name == "runs" and not pressed:
        pressed.append(path)
        os.kill(os.getpid(), signal.SIGINT)
    return real(path, *args, **kwargs)

shutil.rmtree = rmtree
from app.__main__ import run
sys.argv[0] = "chatbot"
run()
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_ctrl_c_after_the_adapter_is_registered_ends_the_run_as_finished(isolated_state,
                                                                         tiny_model, tmp_path):
    fact_dataset(isolated_state, tiny_model)
    config = tmp_path / "bot.yaml"
    config.write_text(json.dumps({"models": {"chat": str(tiny_model)},
                                  "training": {"device": "cpu", "max_seq_len": 256}}))
    out = subprocess.run(
        [sys.executable, "-c", "from pathlib import Path\n" + PRESS_AS_CHECKPOINTS_GO, "train",
         "--data", "facts", "--name", "late", "--max-steps", "2",
         "--eval-every", "2", "--batch-size", "4", "--quiet", "--config", str(config)],
        capture_output=True, text=True, timeout=600, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["adapter"] == str(isolated_state / "adapters/late")
    assert (isolated_state / "adapters/late/adapter_manifest.json").is_file()
    assert not (isolated_state / "runs/late").exists()
