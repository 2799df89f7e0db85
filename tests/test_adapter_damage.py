"""An adapter folder saved or copied only in part (no weights, weights cut short, no LoRA
config) is refused with a line that names the file, wherever it is used: serving, merging,
listing and continuing it with DPO or KTO."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from transformers import AutoTokenizer

from app.cli import main
from chatbot.adapters import AdapterManifest
from chatbot.errors import ModelError
from chatbot.generate import TransformersGenerator
from chatbot.models import chat_template_hash, model_fingerprint
from lora import save_lora_adapter
from training.train.finetune import FinetuneRequest
from training.train.preference import PreferenceRequest, train_preference


def _cut_short(folder):
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


DAMAGES = {
    "weights missing": (lambda folder: (folder / "adapter_model.safetensors").unlink(),
                        "adapter_model.safetensors is missing"),
    "weights cut short": (_cut_short, "adapter_model.safetensors cannot be read"),
    "lora config missing": (lambda folder: (folder / "adapter_config.json").unlink(),
                            "adapter_config.json is missing"),
}


@pytest.fixture(params=DAMAGES, ids=list(DAMAGES))
def damaged(request, tmp_path, tiny_model_dir, monkeypatch):
    """(config, adapter folder, expected words): adapter ``zorb``, registered, then damaged."""
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    folder = save_lora_adapter(tiny_model_dir, tmp_path / "data/adapters/zorb")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.save_pretrained(folder)
    AdapterManifest(name="zorb", method="lora", base_model=str(tiny_model_dir),
                    base_model_fingerprint=model_fingerprint(tiny_model_dir),
                    chat_template_hash=chat_template_hash(tokenizer)).save(folder)
    damage, words = DAMAGES[request.param]
    damage(folder)
    config = tmp_path / "bot.yaml"
    config.write_text(f"models:\n  chat: {tiny_model_dir}\n")
    return config, folder, words


def test_serving_a_damaged_adapter_names_the_file(damaged, tiny_model_dir):
    _, folder, words = damaged
    generator = TransformersGenerator(str(tiny_model_dir), "tiny", device="cpu")
    with pytest.raises(ModelError, match=f"adapter {folder} is incomplete: {words}"):
        generator.load_adapter("zorb", folder)


def test_merging_a_damaged_adapter_is_one_line_and_writes_nothing(damaged, tmp_path):
    config, folder, words = damaged
    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["train", "merge", "zorb", "--out", str(out),
                                       "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: adapter {folder} is incomplete: {words}")
    assert "copy the whole folder again or retrain the adapter" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_adapters_list_says_a_damaged_adapter_is_not_served(damaged):
    config, folder, words = damaged
    result = CliRunner().invoke(main, ["adapters", "list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"zorb\tnot served: adapter {folder} is incomplete: {words}")


def test_preference_tuning_from_a_damaged_adapter_is_refused_before_loading(
        damaged, tmp_path, tiny_model_dir):
    _, folder, words = damaged
    from test_train_preference import preference_dataset

    preference_dataset(tmp_path / "data", tiny_model_dir)
    run = FinetuneRequest(data_dir=tmp_path / "data", dataset="prefs", name="zorb-dpo",
                          base_model=str(tiny_model_dir), device="cpu")
    with pytest.raises(ModelError, match=f"adapter {folder} is incomplete: {words}"):
        train_preference(PreferenceRequest(run, "dpo", 0.1, "zorb"), progress=False)
    assert not (tmp_path / "data/runs/zorb-dpo").exists()


def test_merging_an_adapter_whose_tokenizer_was_cut_short_writes_nothing(tmp_path,
                                                                          tiny_model_dir,
                                                                          monkeypatch):
    """The merge read the adapter's tokenizer after writing the merged weights: a damaged one
    ended in a JSONDecodeError traceback and left the weights in a hidden .NAME.partial."""
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "data"))
    folder = save_lora_adapter(tiny_model_dir, tmp_path / "data/adapters/zorb")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    AdapterManifest(name="zorb", method="lora", base_model=str(tiny_model_dir)).save(folder)
    (folder / "tokenizer_config.json").write_text('{"add_bos')
    config = tmp_path / "bot.yaml"
    config.write_text(f"models:\n  chat: {tiny_model_dir}\n")
    out = tmp_path / "merged"
    result = CliRunner().invoke(main, ["train", "merge", "zorb", "--out", str(out),
                                       "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error: adapter {folder} is incomplete: its tokenizer "
                                    "cannot be read (")
    assert result.stderr.endswith("; copy the whole folder again or retrain the adapter with "
                                  "`chatbot train`\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bot.yaml", "data"]
