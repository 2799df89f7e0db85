"""Variable-length attention on CUDA for packed rows, registered with transformers.

A packed row holds several sequences; with ``sdpa`` transformers builds a dense block-diagonal
mask and computes every masked block. PyTorch's ``torch.nn.attention.varlen.varlen_attn``
(FlashAttention, no extra wheel) takes the sequence boundaries instead and skips them. The model
forwards ``cu_seq_lens_q``/``max_length_q`` keyword arguments down to the attention function.

    python -c "from training.train.attention import varlen_available; print(varlen_available())"
"""

from __future__ import annotations

import torch

NAME = "packed_varlen"


def varlen_available() -> bool:
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def register() -> str:
    """Register the varlen attention and its (empty) mask; returns the implementation name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, _varlen_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    return NAME


def _varlen_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                    **kwargs):
    from torch.nn.attention.varlen import varlen_attn

    if kwargs.get("cu_seq_lens_q") is not None:
        cu, longest = kwargs["cu_seq_lens_q"], int(kwargs["max_length_q"])
    else:  # callers that pass only packed position ids (e.g. TRL's padding-free collator)
        cu, longest = _boundaries(kwargs["position_ids"], query.shape[2])
    # (1, heads, T, dim) -> (T, heads, dim); the kernel takes bf16/fp16 only, and float32 norms
    # (QLoRA's k-bit preparation) make float32 projections: run it in the autocast dtype.
    dtype = query.dtype if query.dtype in (torch.float16, torch.bfloat16) else _half_dtype()
    q, k, v = (tensor.squeeze(0).transpose(0, 1).to(dtype) for tensor in (query, key, value))
    if k.shape[1] != q.shape[1]:  # grouped-query attention: repeat the key/value heads
        repeat = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    out = varlen_attn(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, longest, longest,
                      scale=scaling, window_size=(-1, 0))
    return out.unsqueeze(0).to(query.dtype), None  # (1, T, heads, dim)


def _half_dtype() -> torch.dtype:
    if torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return torch.bfloat16


def _boundaries(position_ids, length: int):
    """Sequence boundaries of a packed row from its position ids (each sequence restarts at 0)."""
    positions = position_ids.reshape(-1)[:length]
    starts = (positions == 0).nonzero().reshape(-1)
    end = torch.tensor([length], device=positions.device)
    cu = torch.cat([starts, end]).to(torch.int32)
    return cu, int((cu[1:] - cu[:-1]).max())
