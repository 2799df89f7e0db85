"""The transformers generator on a tiny random model: streaming, determinism, adapters, lock."""

import threading
import warnings

import pytest

from chatbot.errors import ModelError
from chatbot.generate import GenerationSettings, TransformersGenerator
from chatbot.types import Message
from lora import save_lora_adapter

QUESTION = [Message("system", "Be brief."), Message("user", "How do I index documents?")]
GREEDY = GenerationSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def generator(tiny_model_dir) -> TransformersGenerator:
    return TransformersGenerator(str(tiny_model_dir), "tiny", device="cpu")


def test_greedy_streaming_is_deterministic(generator) -> None:
    first = "".join(generator.stream(QUESTION, GREEDY))
    second = "".join(generator.stream(QUESTION, GREEDY))
    assert first == second and first
    assert generator.count_text(first) <= GREEDY.max_new_tokens


def test_prompt_is_rendered_with_the_models_chat_template(generator) -> None:
    text = generator.tokenizer.decode(generator.encode(QUESTION))
    assert text == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                    "How do I index documents?<|im_end|>\n<|im_start|>assistant\n")


def test_concurrent_requests_are_serialized_and_all_answered(generator) -> None:
    expected = "".join(generator.stream(QUESTION, GREEDY))
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        "".join(generator.stream(QUESTION, GREEDY)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_lora_adapter_switches_on_one_base_model(tiny_model_dir, tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_size = sum(p.numel() for p in base.parameters())
    save_lora_adapter(tiny_model_dir, tmp_path / "ft")
    generator = TransformersGenerator(str(tiny_model_dir), "tiny", device="cpu")
    before = "".join(generator.stream(QUESTION, GREEDY))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        generator.load_adapter("ft-v1.1", tmp_path / "ft")  # a dot can't be a module name
    assert [str(w.message) for w in said] == []  # no library's notice in the user's output
    with_adapter = "".join(generator.stream(QUESTION, GREEDY, adapter="ft-v1.1"))
    without = "".join(generator.stream(QUESTION, GREEDY))
    assert without == before
    assert with_adapter != before
    base_params = sum(p.numel() for n, p in generator.model.named_parameters() if "lora" not in n)
    assert base_params == base_size  # one copy of the base weights, adapters beside it


def test_a_missing_model_directory_names_the_fix(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="run `chatbot models prepare`"):
        TransformersGenerator(str(tmp_path / "empty"), "empty", device="cpu")


def test_a_model_folder_whose_weights_were_cut_short_names_the_fix(tiny_model_dir,
                                                                     tmp_path) -> None:
    """A merged model or a full fine-tune copied only in part ended in a safetensors
    traceback."""
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "cut")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelError, match=rf"^could not load chat model 'cut' from {folder}: "
                                         r"its safetensors weights cannot be read \(.*\); the "
                                         r"folder was saved or copied only in part: save or "
                                         r"copy it again$"):
        TransformersGenerator(str(folder), "cut", device="cpu")


def test_a_stream_its_reader_abandoned_does_not_hold_the_model(generator) -> None:
    abandoned = generator.stream(QUESTION, GREEDY)
    next(abandoned)  # read once, then dropped without being closed (a closed browser tab)
    answers = []
    other = threading.Thread(target=lambda: answers.append(
        "".join(generator.stream(QUESTION, GREEDY))), daemon=True)
    other.start()
    other.join(timeout=60)
    assert answers and answers[0]
    del abandoned


def test_cancel_stops_a_stream_at_the_next_token(generator) -> None:
    long = GenerationSettings(max_new_tokens=400)
    cancel = threading.Event()
    cancel.set()  # cancelled while waiting for the model: it never starts
    assert "".join(generator.stream(QUESTION, long, cancel=cancel)) == ""
    cancel.clear()
    pieces = []
    for piece in generator.stream(QUESTION, long, cancel=cancel):
        pieces.append(piece)
        cancel.set()
    assert 1 <= len(pieces) < 100  # a busy reader may see a few more before the model stops


def test_closing_a_stream_returns_once_the_model_has_stopped(generator) -> None:
    """A process may exit right after: torch aborts it if a generation thread still runs."""
    before = set(threading.enumerate())
    stream = generator.stream(QUESTION, GenerationSettings(max_new_tokens=400))
    next(stream)
    stream.close()
    assert [t for t in threading.enumerate() if t not in before] == []
