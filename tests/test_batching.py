"""Continuous batching on the tiny model: concurrent answers equal lone ones; slots free."""

import threading
import time

import pytest

from chatbot.batching import BatchingTransformersGenerator
from chatbot.generate import GenerationSettings, TransformersGenerator
from chatbot.types import Message
from lora import save_lora_adapter
from tests.test_cancellation import talkative_model_dir  # noqa: F401 (a fixture)

PROMPTS = ["How do I index documents?", "Hi", "What happens when I sync the folder again "
           "after deleting two files and renaming a third one?", "Tell me about adapters.",
           "Why?", "List three things a chatbot needs, with one sentence on each of them."]
LENGTHS = [12, 5, 20, 9, 16, 7]


def ask(text: str) -> list[Message]:
    return [Message("system", "Be brief."), Message("user", text)]


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with its weights scaled up: its random answers then depend on the whole
    prompt and every position (at the fixture's scale it answers every prompt with newlines)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.mul_(10)
    target = tmp_path_factory.mktemp("lively-tiny-model")
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def single(model_dir) -> TransformersGenerator:
    return TransformersGenerator(str(model_dir), "tiny", device="cpu")


@pytest.fixture(scope="module")
def alone(single) -> list[str]:
    """Each prompt's greedy answer from the one-at-a-time generator."""
    return ["".join(single.stream(ask(p), GenerationSettings(max_new_tokens=n)))
            for p, n in zip(PROMPTS, LENGTHS)]


@pytest.fixture(scope="module")
def batching(model_dir) -> BatchingTransformersGenerator:
    return BatchingTransformersGenerator(str(model_dir), "tiny", device="cpu", max_batch=4)


def answer_all(generator, requests) -> list[str]:
    """Answer ``(messages, settings, adapter)`` requests on one thread each, all at once."""
    answers = [""] * len(requests)
    start = threading.Barrier(len(requests))

    def one(i: int) -> None:
        messages, settings, adapter = requests[i]
        start.wait()
        answers[i] = "".join(generator.stream(messages, settings, adapter))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return answers


def test_concurrent_greedy_answers_equal_the_ones_given_alone(batching, alone) -> None:
    requests = [(ask(p), GenerationSettings(max_new_tokens=n), None)
                for p, n in zip(PROMPTS, LENGTHS)]
    assert answer_all(batching, requests) == alone
    assert all(alone)


def test_a_request_joining_mid_answer_gets_its_lone_answer(batching, single, alone) -> None:
    settings = GenerationSettings(max_new_tokens=300)
    expected = "".join(single.stream(ask(PROMPTS[2]), settings))
    running = batching.stream(ask(PROMPTS[2]), settings)
    first = next(running)  # its row is decoding
    joined = "".join(batching.stream(ask(PROMPTS[1]), GenerationSettings(max_new_tokens=5)))
    assert joined == alone[1]
    assert first + "".join(running) == expected


def test_each_step_decodes_only_the_newest_tokens_of_a_long_answer(model_dir, single) -> None:
    """Each step re-decoded the row's whole answer: the text work of a step grew with the
    answer, and a long answer's steps slowed the whole batch."""
    generator = BatchingTransformersGenerator(str(model_dir), "tiny", device="cpu")
    decode, decoded = generator.tokenizer.decode, []

    def counted(ids, *args, **kwargs):
        decoded.append(len(ids))
        return decode(ids, *args, **kwargs)

    generator.tokenizer.decode = counted
    settings = GenerationSettings(max_new_tokens=300)
    answer = "".join(generator.stream(ask(PROMPTS[2]), settings))
    assert answer == "".join(single.stream(ask(PROMPTS[2]), settings))
    assert len(decoded) > 100 and max(decoded) <= 8


def test_adapters_never_leak_between_rows_of_one_batch(model_dir, single, tmp_path) -> None:
    save_lora_adapter(model_dir, tmp_path / "ft")
    single.load_adapter("ft.v1", tmp_path / "ft")  # a dot can't be in a torch module name
    batched = BatchingTransformersGenerator(str(model_dir), "tiny", device="cpu")
    batched.load_adapter("ft.v1", tmp_path / "ft")
    settings = GenerationSettings(max_new_tokens=10)
    requests = [(ask(p), settings, adapter) for p in PROMPTS[:3] for adapter in (None, "ft.v1")]
    expected = ["".join(single.stream(*request)) for request in requests]
    assert answer_all(batched, requests) == expected
    assert expected[0] != expected[1]  # the adapter does change the answer


def test_a_cancelled_request_frees_its_slot_and_the_others_go_on(model_dir, single,
                                                                 alone) -> None:
    generator = BatchingTransformersGenerator(str(model_dir), "tiny", device="cpu",
                                              max_batch=2)
    endless = GenerationSettings(max_new_tokens=900)
    expected = "".join(single.stream(ask(PROMPTS[2]), endless))
    cancel_first, cancel_other = threading.Event(), threading.Event()
    first = generator.stream(ask(PROMPTS[0]), endless, cancel=cancel_first)
    next(first)  # it holds one of the two slots
    other = generator.stream(ask(PROMPTS[2]), endless, cancel=cancel_other)
    other_text = next(other)  # and this one the other
    waiting = []
    waiter = threading.Thread(target=lambda: waiting.append("".join(generator.stream(
        ask(PROMPTS[1]), GenerationSettings(max_new_tokens=5)))))
    waiter.start()
    cancel_first.set()
    list(first)  # ends at once
    waiter.join(timeout=60)
    cancel_other.set()
    other_text += "".join(other)
    assert waiting == [alone[1]]  # it started in the freed slot while the other still ran
    assert expected.startswith(other_text) and len(other_text) < len(expected)


def test_a_request_cancelled_while_it_waits_for_a_slot_ends_at_once(model_dir, single) -> None:
    """A closed tab whose answer waits behind a full batch ends then, not once a running
    answer finishes: until it ends, the API counts it in server.max_waiting_answers."""
    generator = BatchingTransformersGenerator(str(model_dir), "tiny", device="cpu",
                                              max_batch=1)
    endless = GenerationSettings(max_new_tokens=900)
    expected = "".join(single.stream(ask(PROMPTS[2]), endless))
    cancel_running, cancel_waiting = threading.Event(), threading.Event()
    running = generator.stream(ask(PROMPTS[2]), endless, cancel=cancel_running)
    running_text = next(running)  # it holds the only slot
    waiting = generator.stream(ask(PROMPTS[1]), endless, cancel=cancel_waiting)
    ended = []
    reader = threading.Thread(target=lambda: ended.append("".join(waiting)))
    reader.start()
    cancel_waiting.set()
    reader.join(timeout=60)
    cancel_running.set()
    running_text += "".join(running)
    assert ended == [""]
    assert expected.startswith(running_text) and len(running_text) < len(expected)


def test_a_short_prompt_waits_one_chunk_of_a_long_one_not_all_of_it(
        talkative_model_dir) -> None:  # noqa: F811 (the imported fixture)
    """Prompts admitted together take turns at prefill: a one-line question behind a pasted
    page got its first token only once the page's ~3,500 tokens were all prefilled."""
    generator = BatchingTransformersGenerator(str(talkative_model_dir), "talkative",
                                              device="cpu", max_batch=2)
    endless, first_token = GenerationSettings(max_new_tokens=900), GenerationSettings(1)
    cancels = [threading.Event(), threading.Event()]
    running = [generator.stream(ask(p), endless, cancel=c) for p, c in zip(PROMPTS, cancels)]
    for stream in running:
        next(stream)  # the two places are taken: the next two prompts wait together
    answered: list[str] = []

    def answer(name: str, text: str) -> None:
        "".join(generator.stream(ask(text), first_token))
        answered.append(name)

    page = "Summarize this page: " + "the index holds chunks of text " * 500
    readers = [threading.Thread(target=answer, args=pair)
               for pair in (("page", page), ("question", "Why?"))]
    for queued, reader in enumerate(readers, 1):
        reader.start()
        while len(generator._waiting) < queued:  # the page is queued first
            time.sleep(0.01)
    for cancel in cancels:
        cancel.set()
    for reader in readers:
        reader.join(timeout=120)
    assert answered == ["question", "page"]


def test_sampling_settings_apply_to_their_own_row_only(batching, single, alone) -> None:
    """A sampled row, a penalized row and a short row share steps with a greedy one; each
    gets what it would alone."""
    hot = GenerationSettings(max_new_tokens=20, temperature=2.0)
    penalized = GenerationSettings(max_new_tokens=16, repetition_penalty=1.5)
    short = GenerationSettings(max_new_tokens=3)
    requests = [(ask(PROMPTS[0]), GenerationSettings(max_new_tokens=LENGTHS[0]), None),
                (ask(PROMPTS[2]), hot, None), (ask(PROMPTS[5]), penalized, None),
                (ask(PROMPTS[3]), short, None)]
    greedy, sampled, kept_apart, cut = answer_all(batching, requests)
    assert greedy == alone[0]
    assert sampled != alone[2][:len(sampled)]  # it sampled: the greedy row did not
    assert kept_apart == "".join(single.stream(ask(PROMPTS[5]), penalized))
    assert cut == "".join(single.stream(ask(PROMPTS[3]), short)) != alone[3]


def test_a_stop_string_ends_its_row_and_the_other_goes_on(batching, single) -> None:
    """The engine closes a stream at its stop string; the row beside it is untouched."""
    from chatbot.engine import Engine
    from chatbot.variants import Variant

    variants = {"plain": Variant("plain", "tiny", "plain", False)}
    lone, batched = Engine(variants, lambda _: single), Engine(variants, lambda _: batching)
    long = GenerationSettings(max_new_tokens=30)
    words = lone.answer("s", PROMPTS[2], settings=long).result().text.split()
    stopping = GenerationSettings(max_new_tokens=30, stop=(words[3],))
    expected = [lone.answer("s", q, settings=s).result().text
                for q, s in ((PROMPTS[2], stopping), (PROMPTS[4], long))]
    streams = [batched.answer("s", q, settings=s)
               for q, s in ((PROMPTS[2], stopping), (PROMPTS[4], long))]
    assert [stream.result().text for stream in streams] == expected
    assert len(expected[0].split()) <= 3 < len(expected[1].split())



def answer_within(generator, messages, settings, seconds: float = 60) -> str | Exception:
    """The answer, or the error it raised; fails the test if neither comes in ``seconds``."""
    outcome: list = []

    def ask_once() -> None:
        try:
            outcome.append("".join(generator.stream(messages, settings)))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=ask_once, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    assert outcome, f"no answer and no error within {seconds} s"
    return outcome[0]


def test_a_temperature_too_small_for_float32_decodes_greedily(batching, single, alone) -> None:
    """1e-300 is 0 in float32: dividing the logits by it gave NaN and failed the batch."""
    tiny = GenerationSettings(max_new_tokens=LENGTHS[0], temperature=1e-300)
    assert answer_within(batching, ask(PROMPTS[0]), tiny) == alone[0]
    assert answer_within(single, ask(PROMPTS[0]), tiny) == alone[0]


def test_a_row_whose_sampling_fails_ends_alone_and_the_others_go_on(batching, single) -> None:
    """Settings that break sampling (a NaN temperature) fail their own request with an error,
    neither the answers beside it nor itself left hanging."""
    from chatbot.errors import ModelError

    settings = GenerationSettings(max_new_tokens=40)
    expected = "".join(single.stream(ask(PROMPTS[2]), settings))
    running = batching.stream(ask(PROMPTS[2]), settings)
    first = next(running)  # its row is decoding
    broken = GenerationSettings(max_new_tokens=5, temperature=float("nan"))
    failed = answer_within(batching, ask(PROMPTS[1]), broken)
    assert isinstance(failed, ModelError) and "generation failed" in str(failed)
    assert first + "".join(running) == expected


def test_at_exit_the_worker_ends_before_the_interpreter_does(model_dir) -> None:
    """A daemon worker still inside a torch call when Python finalizes aborts the process
    (`chatbot ask` exited with SIGABRT on a busy machine); the atexit hook ends it first."""
    import subprocess
    import sys

    script = ("import sys; from chatbot.batching import BatchingTransformersGenerator as B; "
              "from chatbot.generate import GenerationSettings as S; "
              "from chatbot.types import Message as M; "
              "g = B(sys.argv[1], 'tiny', device='cpu', max_batch=2); "
              "import atexit; atexit.register(lambda: print("  # runs last: hooks are LIFO
              "'worker alive after exit hooks:', g._worker.is_alive())); "
              "print(''.join(g.stream([M('user', 'Hi')], S(max_new_tokens=4))) is not None)")
    done = subprocess.run([sys.executable, "-c", script, str(model_dir)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True", "worker alive after exit hooks: False"]
