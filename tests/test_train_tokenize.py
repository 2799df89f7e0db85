"""Masking: exactly the assistant text (and its end-of-turn token) is supervised."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from training.train.batches import pack
from training.errors import DatasetError
from training.train.tokenize import IGNORE, RenderedExample, render_all, render_example
from train_support import SYSTEM, tokenizer_dir

END = "<|im_end|>"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tokenizer_dir())


def conversation_of(*turns: str) -> list[dict]:
    roles = ["user", "assistant"]
    return [{"role": "system", "content": SYSTEM}] + [
        {"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]


def supervised_spans(ids, labels) -> list[list[int]]:
    spans, current = [], []
    for token, label in zip(ids, labels):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


@pytest.mark.parametrize("answer", [
    "The logo is teal.", " leading space and trailing  ", "Line one\nline two\n\n- a list",
    "Unicode: café, 東京, emoji 🎉", "<b>html</b> and {{ braces }}"])
def test_supervised_tokens_decode_to_the_assistant_text(tokenizer, answer):
    messages = conversation_of("What colour is the logo?", answer)
    ids, labels = render_example(messages, tokenizer)
    spans = supervised_spans(ids, labels)
    assert len(spans) == 1
    assert tokenizer.decode(spans[0]) == answer + END
    # the rendering is exactly the serving chat template's
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(ids) == text


def test_all_assistant_supervises_every_turn_and_last_only_the_last(tokenizer):
    messages = conversation_of("Hi", "Hello!", "Port?", "It is 4242.", "Thanks", "You're welcome.")
    ids, labels = render_example(messages, tokenizer, "all_assistant")
    assert [tokenizer.decode(s) for s in supervised_spans(ids, labels)] == [
        "Hello!" + END, "It is 4242." + END, "You're welcome." + END]
    ids_last, labels_last = render_example(messages, tokenizer, "last_assistant")
    assert ids_last == ids
    assert [tokenizer.decode(s) for s in supervised_spans(ids, labels_last)] == [
        "You're welcome." + END]


def test_a_turn_of_weight_zero_is_context_under_either_policy(tokenizer):
    """OpenAI's fine-tuning format: ``"weight": 0`` keeps an assistant turn out of the loss."""
    messages = conversation_of("Hi", "Wrong answer.", "Port?", "It is 4242.")
    messages[2]["weight"] = 0
    for policy in ("all_assistant", "last_assistant"):
        ids, labels = render_example(messages, tokenizer, policy)
        assert [tokenizer.decode(s) for s in supervised_spans(ids, labels)] == [
            "It is 4242." + END]
    messages[4]["weight"] = 0
    with pytest.raises(DatasetError, match="no assistant turn to learn"):
        render_example(messages, tokenizer)


def test_a_conversation_without_assistant_turn_is_an_error(tokenizer):
    with pytest.raises(DatasetError, match="no assistant turn"):
        render_example(conversation_of("Only a question"), tokenizer)


def test_unknown_policy_is_an_error(tokenizer):
    with pytest.raises(DatasetError, match="unknown masking policy 'everything'"):
        render_example(conversation_of("Q", "A"), tokenizer, "everything")


def test_zero_supervised_tokens_in_a_dataset_is_an_error(tokenizer):
    # the assistant turn lies past max_seq_len, so truncation leaves nothing to learn
    long_question = "word " * 200
    with pytest.raises(DatasetError, match="no supervised .assistant. tokens"):
        render_all([conversation_of(long_question, "Answer.")], tokenizer, "all_assistant",
                   max_seq_len=64)


def test_report_counts_truncated_and_dropped_examples(tokenizer):
    rows = [conversation_of("Short?", "Yes."), conversation_of("word " * 200, "No.")]
    examples, report = render_all(rows, tokenizer, "all_assistant", max_seq_len=64)
    assert len(examples) == 1
    assert report["truncated"] == 1 and report["dropped_no_supervised"] == 1
    assert 0 < report["supervised_share"] < 1


def test_packing_shifts_targets_and_restarts_positions():
    first = RenderedExample((5, 6, 7), (IGNORE, 6, 7))
    second = RenderedExample((8, 9), (IGNORE, 9))
    batch = pack([first, second])
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    # position i predicts token i + 1: 5->6, 6->7, then 8->9 (never 7->8 across sequences)
    assert batch.positions.tolist() == [0, 1, 3]
    assert batch.targets.tolist() == [6, 7, 9]
    assert batch.cu_seq_lens.tolist() == [0, 3, 5]
