"""Continuous batching for the in-process model: concurrent answers share each decode step.

Why a scheduler of our own rather than transformers' ``generate_batch`` /
``ContinuousBatchingManager``: on the 2-core CPU that measured 1.1x for 8 requests against 2.4x
for one left-padded static batch through ``generate`` (shared/NOTES.md), and a static batch
cannot take a request that arrives mid-answer. So this is the left-padded batch made continuous:
one worker thread owns the model and one KV cache of ``[rows, heads, length, dim]`` (grown in
place, chatbot/kv_cache.py); between
decode steps it drops finished or cancelled rows (their slots free at once) and merges newly
prefilled ones, left-padded, with a per-row attention mask and position ids, so each row computes
what it would alone. Prompts are prefilled alone (prefill is compute-bound here: batching it gains
nothing) in chunks of ``PREFILL_CHUNK`` tokens, one chunk between decode steps, so a long prompt
delays running answers by one chunk at a time; prompts waiting together take turns, so a short
one behind a long one waits one chunk, not the whole prompt. Rows with different LoRA adapters
share a step through peft's ``adapter_names``. The model lock is held for one step, never a
whole answer. A step's own work stays small however long the answers: every row's token reaches
the CPU in one transfer, and only each row's newest tokens are decoded to text.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from chatbot.errors import GenerationFailed, ModelBusy, ModelError
from chatbot.generate import GenerationSettings, TransformersGenerator
from chatbot.penalties import penalized, penalizes
from chatbot.types import Message

PREFILL_CHUNK = 256
"""Prompt tokens prefilled between two decode steps (~0.6 s of SmolLM2-135M on 2 CPU cores)."""

_DONE = object()


@dataclass(eq=False)
class _Request:
    tokens: list[int]
    """The prompt, then each generated token."""
    settings: GenerationSettings
    adapter: str | None
    cancel: threading.Event | None
    prompt_len: int
    deadline: float
    """``time.monotonic()`` past which, still waiting for a place, it fails as busy."""
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    closed: threading.Event = field(default_factory=threading.Event)
    cache: object = None
    """Its own KV cache while its prompt is prefilled, before it joins the batch."""
    prefilled: int = 0
    sent_from: int = 0
    """Where the tokens of the text sent last begin: decoded again as context for the next."""
    unsent_from: int = 0
    """Where the tokens whose text is not sent yet begin."""
    seen: object = None
    """A bool tensor over the vocabulary: the tokens so far, for the repetition penalty."""
    rng: object = None
    """A ``torch.Generator`` seeded with ``settings.seed``; ``None``: torch's global one."""

    def stopped(self) -> bool:
        return self.closed.is_set() or (self.cancel is not None and self.cancel.is_set())


class BatchingTransformersGenerator(TransformersGenerator):
    """``TransformersGenerator`` serving up to ``max_batch`` answers at once; an answer waits
    for a place at most ``queue_timeout_s``, then fails as busy."""

    def __init__(self, model_path: str, model_id: str, device: str = "auto",
                 dtype: str = "auto", threads: int | None = None, max_batch: int = 8,
                 queue_timeout_s: float = 120.0) -> None:
        super().__init__(model_path, model_id, device, dtype, threads, queue_timeout_s)
        self.max_batch = max_batch
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else []
        self._eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self._top_k = config.top_k
        self._waiting: deque[_Request] = deque()
        self._wake = threading.Event()
        self._prefilling: list[_Request] = []
        self._rows: list[_Request] = []
        self._cache = None
        self._mask = None
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False

    def stream(self, messages: list[Message], settings: GenerationSettings,
               adapter: str | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield text pieces as this request's row decodes; closing the iteration or setting
        ``cancel`` drops the row before the next step."""
        if adapter and adapter not in self.adapters:
            raise ModelError(f"adapter {adapter!r} is not loaded")
        ids = self.encode(messages)
        request = _Request(list(ids), settings, adapter, cancel, len(ids),
                           time.monotonic() + self.queue_timeout_s,
                           sent_from=len(ids), unsent_from=len(ids))
        self._ensure_worker()
        self._waiting.append(request)
        self._wake.set()
        try:
            while True:
                item = request.out.get()
                if item is _DONE:
                    return
                if isinstance(item, ModelBusy):
                    raise item
                if isinstance(item, BaseException):
                    raise GenerationFailed(f"generation failed in {self.model_id}: {item}") from item
                yield item
        finally:
            request.closed.set()
            self._wake.set()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, daemon=True,
                                                name=f"batching-{self.model_id}")
                self._worker.start()
                atexit.register(_stop_at_exit, weakref.ref(self))

    def stop(self, timeout: float = 30.0) -> None:
        """End the worker after its current step and wait for it. At exit this runs by
        itself: a daemon thread still inside a torch call when the interpreter finalizes
        aborts the process ("terminate called without an active exception")."""
        self._stopping = True
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)

    def _run(self) -> None:
        import torch

        while not self._stopping:
            self._drop_stopped()
            self._admit()
            self._refuse_overdue()
            if not self._prefilling and not self._rows:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                with self._lock, torch.inference_mode():
                    if self._prefilling:
                        self._prefill_chunk(self._prefilling[0])
                    if self._rows:
                        self._decode_step()
            except Exception as exc:  # every request in flight gets it; the worker goes on
                for request in self._prefilling + self._rows:
                    request.out.put(exc)
                self._prefilling, self._rows, self._cache, self._mask = [], [], None, None

    def _admit(self) -> None:
        while self._waiting and len(self._prefilling) + len(self._rows) < self.max_batch:
            request = self._waiting.popleft()
            if request.stopped() or request.settings.max_new_tokens <= 0:
                request.out.put(_DONE)
            else:
                self._prefilling.append(request)

    def _refuse_overdue(self) -> None:
        """Fail as busy the requests that waited ``queue_timeout_s`` for a place."""
        now = time.monotonic()
        for request in [r for r in list(self._waiting) if r.deadline <= now]:
            self._waiting.remove(request)  # other threads only append: it is still there
            request.out.put(ModelBusy(
                f"the model had no free place for {self.queue_timeout_s:g} s: all "
                f"{self.max_batch} of its places (models.max_batch) held answers under way; "
                "ask again later, or raise models.max_batch or models.queue_timeout_s"))

    def _drop_stopped(self) -> None:
        """End the stopped requests: rows, prompts being prefilled, and those still waiting
        for a place (a closed tab behind a full batch ends now, not once a row frees)."""
        for request in [r for r in list(self._waiting) if r.stopped()]:
            self._waiting.remove(request)  # other threads only append: it is still there
            request.out.put(_DONE)
        for request in [r for r in self._prefilling if r.stopped()]:
            self._prefilling.remove(request)
            request.out.put(_DONE)
        keep = [i for i, r in enumerate(self._rows) if not r.stopped()]
        if len(keep) < len(self._rows):
            for i, request in enumerate(self._rows):
                if i not in keep:
                    request.out.put(_DONE)
            self._keep_rows(keep)

    def _adapter_kwargs(self, requests: list[_Request]) -> dict:
        if not self.adapters:
            return {}
        return {"adapter_names": [self.peft_name(r.adapter) if r.adapter else "__base__"
                                  for r in requests]}

    def _prefill_chunk(self, request: _Request) -> None:
        import torch

        from chatbot.kv_cache import HeadroomCache

        start = request.prefilled
        end = min(start + PREFILL_CHUNK, request.prompt_len)
        if request.cache is None:
            request.cache = HeadroomCache()
        out = self.model(
            input_ids=torch.tensor([request.tokens[start:end]], device=self.device),
            attention_mask=torch.ones(1, end, dtype=torch.long, device=self.device),
            position_ids=torch.arange(start, end, device=self.device)[None],
            cache=request.cache, use_cache=True, logits_to_keep=1,
            **self._adapter_kwargs([request]))
        request.prefilled = end
        if end < request.prompt_len:  # the next prompt's turn: a short one waits one chunk
            self._prefilling.append(self._prefilling.pop(self._prefilling.index(request)))
            return
        self._prefilling.remove(request)
        if self._advance([request], out.logits[:, -1]) == [0]:
            self._join(request)
        request.cache = None

    def _decode_step(self) -> None:
        import torch

        rows = self._rows
        mask = torch.cat([self._mask, self._mask.new_ones(len(rows), 1)], dim=1)
        out = self.model(
            input_ids=torch.tensor([[r.tokens[-1]] for r in rows], device=self.device),
            attention_mask=mask,
            position_ids=torch.tensor([[len(r.tokens) - 1] for r in rows], device=self.device),
            cache=self._cache, use_cache=True, logits_to_keep=1,
            **self._adapter_kwargs(rows))
        self._mask = mask
        keep = self._advance(rows, out.logits[:, -1])
        if len(keep) < len(rows):
            self._keep_rows(keep)

    def _advance(self, requests: list[_Request], logits) -> list[int]:
        """Pick and emit each row's next token from its row of ``logits``; the indexes of the
        rows not finished. The tokens reach the CPU in one transfer, so a step waits for the
        device once, not once a row. Sampling that fails on a row's own settings ends that
        row with the error, not the batch."""
        chosen = logits.argmax(-1)  # the greedy rows' picks, all at once
        failed = set()
        for i, request in enumerate(requests):
            settings = request.settings
            if settings.greedy and settings.repetition_penalty == 1.0 and not penalizes(settings):
                continue
            try:
                chosen[i] = self._pick(request, logits[i])
            except RuntimeError as exc:
                request.out.put(exc)
                failed.add(i)
        return [i for i, (request, token) in enumerate(zip(requests, chosen.tolist()))
                if i not in failed and self._emit(request, token)]

    def _pick(self, request: _Request, logits):
        """The next token as ``generate`` picks it, as a tensor on the device: repetition
        penalty, OpenAI's penalties (``chatbot.penalties``), then greedy or temperature, top-k
        and top-p sampling. Masks rather than indexing by masks, which would wait for the
        device."""
        import torch

        settings = request.settings
        logits = logits.float()
        if settings.repetition_penalty != 1.0:
            seen = self._seen(request, logits)
            logits = torch.where(seen & (logits < 0), logits * settings.repetition_penalty,
                                 torch.where(seen, logits / settings.repetition_penalty, logits))
        if penalizes(settings):
            answer = torch.tensor(request.tokens[request.prompt_len:], dtype=torch.long,
                                  device=logits.device)
            logits = penalized(logits, answer, settings)
        if settings.greedy:
            return logits.argmax()
        logits = logits / settings.temperature
        if self._top_k:
            floor = torch.topk(logits, min(self._top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < floor, float("-inf"))
        if settings.top_p < 1.0:
            ordered, order = torch.sort(logits)
            drop = ordered.softmax(-1).cumsum(-1) <= 1 - settings.top_p
            drop[-1] = False
            logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        if settings.seed is not None and request.rng is None:  # the row's own draws
            request.rng = torch.Generator(logits.device).manual_seed(settings.seed % 2**64)
        return torch.multinomial(logits.softmax(-1), 1, generator=request.rng)[0]

    @staticmethod
    def _seen(request: _Request, logits):
        """The row's tokens so far as a mask over ``logits``: the prompt's once, then one
        token a step, rather than a tensor of the whole answer each step."""
        import torch

        if request.seen is None:
            request.seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
            request.seen[torch.tensor(request.tokens, device=logits.device)] = True
        else:
            request.seen[request.tokens[-1]] = True
        return request.seen

    def _emit(self, request: _Request, token: int) -> bool:
        """Record ``token`` and send the text it completes; False once the row is finished."""
        finished = token in self._eos
        if not finished:
            request.tokens.append(token)
            generated = len(request.tokens) - request.prompt_len
            finished = generated >= request.settings.max_new_tokens
            self._send_text(request, finished)
        if finished:
            request.out.put(_DONE)
        return not finished

    def _send_text(self, request: _Request, last: bool) -> None:
        """Send the text the unsent tokens add, decoding them behind the tokens sent last
        (their context: a word's leading space, a character's first bytes) and nothing
        before, so a step's text costs the same at the thousandth token as at the first."""
        tokens = request.tokens
        sent = self.tokenizer.decode(tokens[request.sent_from:request.unsent_from],
                                     skip_special_tokens=True)
        text = self.tokenizer.decode(tokens[request.sent_from:], skip_special_tokens=True)
        if len(text) <= len(sent) or (text.endswith("\ufffd") and not last):
            return  # no text yet, or a character's last byte still to come
        request.out.put(text[len(sent):])
        request.sent_from, request.unsent_from = request.unsent_from, len(tokens)

    def _join(self, request: _Request) -> None:
        """Merge a prefilled request's cache into the batch, left-padding the shorter side."""
        import torch
        import torch.nn.functional as F

        length = request.cache.get_seq_length()
        new_mask = torch.ones(1, length, dtype=torch.long, device=self.device)
        if not self._rows:
            self._cache, self._mask, self._rows = request.cache, new_mask, [request]
            return
        total = max(length, self._mask.shape[1])
        pad_old, pad_new = total - self._mask.shape[1], total - length
        for old, new in zip(self._cache.layers, request.cache.layers):
            old.replace(torch.cat([F.pad(old.keys, (0, 0, pad_old, 0)),
                                   F.pad(new.keys, (0, 0, pad_new, 0))]),
                        torch.cat([F.pad(old.values, (0, 0, pad_old, 0)),
                                   F.pad(new.values, (0, 0, pad_new, 0))]))
        self._mask = torch.cat([F.pad(self._mask, (pad_old, 0)), F.pad(new_mask, (pad_new, 0))])
        self._rows.append(request)

    def _keep_rows(self, keep: list[int]) -> None:
        """Keep only the rows at ``keep``; padding columns no row needs any more are cut."""
        import torch

        self._rows = [self._rows[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(keep, device=self._mask.device)
        mask = self._mask[index]
        start = int(mask.any(dim=0).int().argmax())
        self._mask = mask[:, start:]
        for layer in self._cache.layers:
            layer.replace(layer.keys[index, :, start:], layer.values[index, :, start:])


def _stop_at_exit(generator: weakref.ref) -> None:
    if (alive := generator()) is not None:
        alive.stop()
