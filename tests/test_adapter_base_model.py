"""An adapter is served only on the weights it was trained on: not on a model of the same shape
with other weights, such as the model it was merged into (which would apply it twice)."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from transformers import AutoTokenizer

from app.cli import main
from chatbot.adapters import AdapterManifest
from chatbot.models import chat_template_hash, model_fingerprint
from lora import save_lora_adapter


def register(data_dir, base_dir, fingerprint: str) -> None:
    """The adapter ``zorb`` trained on ``base_dir``, its manifest recording ``fingerprint``."""
    folder = save_lora_adapter(base_dir, data_dir / "adapters/zorb")
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.save_pretrained(folder)
    AdapterManifest(name="zorb", method="lora", base_model=str(base_dir),
                    base_model_fingerprint=fingerprint,
                    chat_template_hash=chat_template_hash(tokenizer)).save(folder)


def ask_zorb(tmp_path, chat_model):
    """``chatbot ask`` through a config variant that puts ``zorb`` on ``chat_model``."""
    config = tmp_path / f"bot-{chat_model.name}.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "generation": {"max_new_tokens": 2},
        "models": {"chat": str(chat_model), "embedder": "hash:64"},
        "variants": {"prompt": {"template": "plain", "retrieval": False},
                     "tuned": {"adapter": "adapters/zorb", "template": "plain",
                               "retrieval": False}}}))
    return CliRunner().invoke(main, ["ask", "--config", str(config), "--variant", "tuned",
                                     "Who maintains Zorb?"])


def test_an_adapter_is_refused_on_the_model_it_was_merged_into(tmp_path, tiny_model_dir):
    register(tmp_path / "data", tiny_model_dir, model_fingerprint(tiny_model_dir))
    merged = tmp_path / "merged"
    assert ask_zorb(tmp_path, tiny_model_dir).exit_code == 0  # its own base: served
    result = CliRunner().invoke(main, ["train", "merge", "zorb", "--out", str(merged), "--config",
                                       str(tmp_path / f"bot-{tiny_model_dir.name}.yaml")])
    assert result.exit_code == 0, result.output
    refused = ask_zorb(tmp_path, merged)
    assert refused.exit_code == 1
    assert refused.stderr.startswith(f"error: adapter {tmp_path / 'data/adapters/zorb'} was "
                                     f"trained on base model '{tiny_model_dir}' (fingerprint ")
    assert f"not on '{merged}'" in refused.stderr


@pytest.mark.parametrize("recorded", ["now", "before weights were sampled"])
def test_an_adapter_still_serves_on_its_own_base_model(tmp_path, tiny_model_dir, recorded):
    fingerprint = model_fingerprint(tiny_model_dir)
    if recorded != "now":  # manifests written before: the config and the weights' sizes only
        fingerprint = fingerprint.split("-")[0]
    register(tmp_path / "data", tiny_model_dir, fingerprint)
    result = ask_zorb(tmp_path, tiny_model_dir)
    assert result.exit_code == 0, result.output


def test_a_weights_file_that_is_no_safetensors_still_has_a_fingerprint(tmp_path):
    """Its header length read as 2**64 - 1 bytes; loading the model says what is wrong."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 8 + b"not a header")
    assert len(model_fingerprint(tmp_path)) == 33
