"""Cached eval answers are reused only for the weights that gave them: a model folder whose
weights changed (a merge written again to the same ``--out``) answers again."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM

from app.build import eval_settings
from chatbot.config_file import load_config
from training.eval.evaluate import run_eval

HELDOUT = str(Path(__file__).parent / "data" / "eval_heldout.jsonl")


def test_new_weights_in_the_same_model_folder_are_answered_again(tmp_path, tiny_model_dir):
    model = shutil.copytree(tiny_model_dir, tmp_path / "merged")
    config = tmp_path / "bot.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "generation": {"max_new_tokens": 2},
        "models": {"chat": str(model), "embedder": "hash:64"},
        "variants": {name: {"template": "plain", "retrieval": False}
                     for name in ("plain", "plain2")}, "default_variant": "plain"}))

    def run():
        return run_eval(eval_settings(load_config(config)), ["plain", "plain2"], HELDOUT,
                        limit=1, encode=None, write=False).run

    assert (run().generated, run().reused) == (2, 2)
    weights = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        weights.model.layers[0].self_attn.q_proj.weight.add_(0.5)
    weights.save_pretrained(model)  # the same folder, the same sizes, other weights
    again = run()
    assert (again.generated, again.reused) == (2, 0)
