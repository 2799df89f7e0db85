"""The in-place KV cache holds exactly what transformers' concatenating cache holds."""

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from chatbot.kv_cache import HEADROOM, HeadroomCache


def test_a_model_decoding_past_the_headroom_sees_the_same_cache() -> None:
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    caches = {"headroom": HeadroomCache(), "dynamic": DynamicCache()}
    prompt = torch.randint(0, 64, (2, 40))
    steps = HEADROOM + 20  # the buffers fill once and are reallocated
    with torch.inference_mode():
        logits = {name: [model(input_ids=prompt, cache=cache, use_cache=True).logits[:, -1]]
                  for name, cache in caches.items()}
        for step in range(steps):
            token = torch.tensor([[step % 64], [(step * 7) % 64]])
            for name, cache in caches.items():
                logits[name].append(model(input_ids=token, cache=cache, use_cache=True)
                                    .logits[:, -1])
    assert caches["headroom"].get_seq_length() == 40 + steps
    for ours, theirs in zip(logits["headroom"], logits["dynamic"]):
        torch.testing.assert_close(ours, theirs)
    for ours, theirs in zip(caches["headroom"].layers, caches["dynamic"].layers):
        torch.testing.assert_close(ours.keys, theirs.keys)
        torch.testing.assert_close(ours.values, theirs.values)


def test_replace_keeps_a_copy_and_room_to_grow() -> None:
    cache = HeadroomCache()
    keys, values = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    cache.update(keys, values, 0)
    layer = cache.layers[0]
    layer.replace(layer.keys[[0, 2]], layer.values[[0, 2]])
    new_keys, new_values = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)
    out_keys, out_values = cache.update(new_keys, new_values, 0)
    torch.testing.assert_close(out_keys, torch.cat([keys[[0, 2]], new_keys], dim=2))
    torch.testing.assert_close(out_values, torch.cat([values[[0, 2]], new_values], dim=2))
    keys.zero_()
    assert out_keys.abs().sum() > 0  # the cache holds its own copy


def test_rows_selected_by_transformers_own_methods_stay_in_the_cache() -> None:
    cache, reference = HeadroomCache(), DynamicCache()
    keys, values = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    for c in (cache, reference):
        c.update(keys, values, 0)
        c.layers[0].batch_select_indices(torch.tensor([2, 0]))
        c.layers[0].reorder_cache(torch.tensor([1, 0]))
    new_keys, new_values = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)
    for ours, theirs in zip(cache.update(new_keys, new_values, 0),
                            reference.update(new_keys, new_values, 0)):
        torch.testing.assert_close(ours, theirs)
