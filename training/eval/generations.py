"""Answers of each variant to each evaluation item, through the engine users get, cached.

``<data_dir>/evals/NAME/generations.jsonl`` holds one line per answer keyed by (variant, item
hash, settings hash): an interrupted eval resumes where it stopped, and adding a variant to a
finished eval generates only the new variant's answers. Changing the prompt template, the
adapter, the weights of a model in a local folder, the bot's name, the generation settings or
the index changes the settings hash, so stale answers are never reused. Since the key is all
a (greedy) answer depends on, the evals of one data file run with and without ``--limit``
(``DATA`` and ``DATA-firstN``) reuse each other's answers too.

    chatbot eval --variants prompt,finetuned --data heldout.jsonl --out heldout
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chatbot.adapters import ADAPTER_MANIFEST
from chatbot.engine import Engine
from chatbot.errors import InputError
from chatbot.generate import GenerationSettings
from chatbot.interrupts import raise_if_interrupted
from chatbot.models import model_fingerprint
from chatbot.prompts import load_template
from index.jsonfile import jsonl_lines
from training.eval.evalset import EvalItem

CACHE_FILE = "generations.jsonl"


@dataclass(frozen=True)
class Generation:
    variant: str
    item_id: str
    item_hash: str
    settings_hash: str
    text: str
    retrieval: bool
    hits: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    refused: bool = False
    error: str | None = None
    """Why the engine did not answer (e.g. the question did not fit the context)."""


class GenerationCache:
    """Append-only JSONL of generations; a torn last line (a killed run) is ignored. ``related``
    are other evals' caches, read only: an answer found there is copied into this one when
    used, so that an eval's folder holds every answer its reports were made from."""

    def __init__(self, path: Path, related: Iterable[Path] = ()) -> None:
        self.path = path
        self._entries = _read(path)
        self._related: dict[tuple[str, str, str], Generation] = {}
        for other in related:
            self._related.update(_read(other))
        # A run killed mid-write leaves a line without its newline: start on a fresh line.
        self._torn = path.is_file() and not path.read_bytes().endswith(b"\n") \
            and path.stat().st_size > 0

    def get(self, variant: str, item_hash: str, settings_hash: str) -> Generation | None:
        key = (variant, item_hash, settings_hash)
        if key not in self._entries and key in self._related:
            self.add(self._related[key])
        return self._entries.get(key)

    def add(self, generation: Generation) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            if self._torn:
                out.write("\n")
                self._torn = False
            out.write(json.dumps(asdict(generation), ensure_ascii=False) + "\n")
        self._entries[_key(generation)] = generation

    def __len__(self) -> int:
        return len(self._entries)


def _key(generation: Generation) -> tuple[str, str, str]:
    return generation.variant, generation.item_hash, generation.settings_hash


def _read(path: Path) -> dict[tuple[str, str, str], Generation]:
    entries = {}
    if path.is_file():
        for line in jsonl_lines(path.read_text(encoding="utf-8")):
            try:
                generation = Generation(**json.loads(line))
            except (ValueError, TypeError):
                continue
            entries[_key(generation)] = generation
    return entries


def variant_settings(engine: Engine, name: str, settings: GenerationSettings,
                     index_state: str | None = None, model_base_dir: Path | None = None
                     ) -> dict:
    """Everything besides the item that decides an answer, as plain data."""
    variant = engine.variant(name)
    adapter_hash = None
    if variant.adapter_dir is not None and (variant.adapter_dir / ADAPTER_MANIFEST).is_file():
        adapter_hash = _file_hash(variant.adapter_dir / ADAPTER_MANIFEST)
    weights = None if variant.backend else local_weights(variant.model, model_base_dir)
    return {**({"weights": weights} if weights else {}),
            "model": variant.model, "template": variant.template,
            "template_hash": load_template(variant.template).hash,
            "bot_name": engine.bot_name,  # the templates put it in the system prompt
            "retrieval": variant.retrieval and engine.search is not None,
            "k": variant.k or engine.retrieval.k, "no_hits": engine.retrieval.no_hits,
            "adapter": variant.adapter_id, "adapter_manifest": adapter_hash,
            "generation": asdict(settings), "index": index_state if variant.retrieval else None}


def local_weights(model: str, base_dir: Path | None) -> str | None:
    """The fingerprint of a model in a local folder, whose weights can change under one name
    (a merge written again to the same ``--out``); ``None`` for a hub id or an embedded
    model, whose name is its identity."""
    path = Path(model).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return model_fingerprint(path) if path.is_dir() else None


def settings_hash(described: dict) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class GenerationRun:
    """What :func:`generate_all` did: answers by variant, in item order, and how."""

    answers: dict[str, list[Generation]]
    settings: dict[str, dict]
    generated: int = 0
    reused: int = 0
    seconds: float = 0.0


def generate_all(engine: Engine, items: list[EvalItem], variants: list[str],
                 settings: GenerationSettings, cache: GenerationCache,
                 index_state: str | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 model_base_dir: Path | None = None) -> GenerationRun:
    """Answer every item with every variant, reusing cached answers. The variants answer each
    item in turn, which of them goes first alternating, so that a paired latency difference
    is not the machine warming up or getting busier between one variant's run and the next."""
    described = {name: variant_settings(engine, name, settings, index_state, model_base_dir)
                 for name in variants}
    keys = {name: settings_hash(described[name]) for name in variants}
    run = GenerationRun({name: [] for name in variants}, described)
    started = time.perf_counter()
    for done, item in enumerate(items, start=1):
        raise_if_interrupted()
        for name in variants if done % 2 else variants[::-1]:
            generation = cache.get(name, item.hash, keys[name])
            if generation is None:
                generation = _answer(engine, item, name, settings, keys[name],
                                     described[name]["retrieval"])
                cache.add(generation)
                run.generated += 1
            else:
                run.reused += 1
            run.answers[name].append(generation)
        if progress:
            progress(", ".join(variants), done, len(items))
    run.seconds = time.perf_counter() - started
    return run


def _answer(engine: Engine, item: EvalItem, variant: str, settings: GenerationSettings,
            key: str, retrieval: bool) -> Generation:
    session = f"eval-{uuid.uuid4().hex[:12]}"
    try:
        reply = engine.answer(session, item.question, variant, settings=settings,
                              history=item.history).result()
    except InputError as exc:
        return Generation(variant, item.id, item.hash, key, "", retrieval, error=str(exc))
    return Generation(variant, item.id, item.hash, key, reply.text, retrieval,
                      reply.sources(), dict(reply.timings), reply.refused)
