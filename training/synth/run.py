"""``chatbot data synth``: questions and grounded answers from the indexed documents, filtered,
rendered as serving prompts and split by document into a dataset ``train`` and ``eval`` read.

    chatbot data synth --name cold-v1 --n 500 --teacher big

sample chunks (``plan``) -> per chunk: ask the teacher for questions, check and dedupe them,
ask for an answer to each, check its support (``checks``) -> record the chunk (``progress``:
a rerun continues here) -> examples in the serving prompt (``examples``) -> the dataset
build's curation steps, whose split keeps each document on one side -> the dataset (``write``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from index.types import Chunk
from training.data.build import dataset_path
from training.data.steps import curate
from training.errors import DataError
from training.synth.checks import (DUPLICATE, QUESTION_STAGE, QuestionDeduper, check_answer,
                                   check_question)
from training.synth.examples import training_example
from training.synth.parse import parse_answer, parse_questions
from training.synth.plan import indexed_chunks, sample_chunks
from training.synth.progress import CALLS, Item, Progress, work_dir
from training.synth.report import SynthSummary, summarize
from training.synth.settings import SynthRequest, SynthSettings
from training.synth.teacher import Teacher
from training.synth.write import write_dataset

NO_QUESTION = "no question parsed"


def synthesize(settings: SynthSettings, request: SynthRequest,
               progress: Callable[[int, int], None] | None = None) -> SynthSummary:
    """Generate (or continue generating) dataset ``request.name``; its summary."""
    request.check()
    data = settings.data
    target = dataset_path(data, request.name)
    if target.exists() and not request.overwrite:
        raise DataError(f"dataset {request.name!r} already exists at {target}; choose another "
                        "name or pass --overwrite")
    teacher = Teacher(settings.engine, request.teacher, data.bot_name)
    plan = sample_chunks(indexed_chunks(settings.index_dir, settings.source_names),
                         math.ceil(request.n / request.questions_per_chunk), request.seed)
    state = Progress(work_dir(data.datasets_root, request.name),
                     {"teacher": teacher.describe(), "seed": request.seed,
                      "questions_per_chunk": request.questions_per_chunk})
    resumed = sum(c.chunk_id in state.done for c in plan)
    started = time.perf_counter()
    asked = _generate(plan, teacher, settings, request.questions_per_chunk, state, progress)
    seconds = time.perf_counter() - started
    items = {c.chunk_id: state.done[c.chunk_id] for c in plan}
    options = replace(data.options, validation_share=request.test_share, seed=request.seed,
                      feedback="all")
    counter = _counter(data)
    curated = curate(_examples(settings, request, plan, items), options, counter)
    summary = summarize(request, target, state.directory, teacher.describe(), plan, items,
                        curated, resumed, asked, seconds)
    write_dataset(target, summary, curated, options, data, counter,
                  state.directory / CALLS, request.overwrite)
    return summary


def _generate(plan: list[Chunk], teacher: Teacher, settings: SynthSettings, count: int,
              state: Progress, progress: Callable[[int, int], None] | None) -> int:
    """Ask about every chunk of ``plan`` not done yet; the questions generated now."""
    deduper = QuestionDeduper(settings.data.options.near_duplicate_threshold,
                              settings.data.options.minhash_permutations)
    deduper.remember(teacher.example_questions())
    deduper.remember([i.question for c in plan for i in state.done.get(c.chunk_id, ())
                      if i.question and i.reason not in QUESTION_STAGE])
    asked = 0
    for done, chunk in enumerate(plan, start=1):
        if chunk.chunk_id not in state.done:
            items = ask_about(chunk, teacher, settings, count, deduper, state)
            state.finish(chunk.chunk_id, items)
            asked += sum(bool(i.question) for i in items)
        if progress:
            progress(done, len(plan))
    return asked


def ask_about(chunk: Chunk, teacher: Teacher, settings: SynthSettings, count: int,
              deduper: QuestionDeduper, state: Progress) -> list[Item]:
    """The items of one chunk: each question parsed from the teacher, with its fate."""
    call = teacher.questions(chunk, count)
    questions = parse_questions(call.response, count)
    reasons = [check_question(q) for q in questions]
    fresh = iter(deduper.duplicates([q for q, r in zip(questions, reasons) if r is None]))
    reasons = [r or (DUPLICATE if next(fresh) else None) for r in reasons]
    state.log_call({"chunk_id": chunk.chunk_id, **call.as_dict(),
                    "accepted": any(r is None for r in reasons),
                    "reason": None if questions else NO_QUESTION,
                    "questions": [{"text": q, "reason": r} for q, r in zip(questions, reasons)]})
    if not questions:
        return [Item(chunk.chunk_id, chunk.source, "", reason=NO_QUESTION)]
    items = []
    for question, reason in zip(questions, reasons):
        if reason:
            items.append(Item(chunk.chunk_id, chunk.source, question, reason=reason))
            continue
        call = teacher.answer(chunk, question)
        answer = parse_answer(call.response)
        verdict = check_answer(answer, chunk.text, settings.attributor)
        state.log_call({"chunk_id": chunk.chunk_id, **call.as_dict(), "question": question,
                        "answer": answer, "accepted": verdict.reason is None,
                        "reason": verdict.reason, "support": verdict.support})
        items.append(Item(chunk.chunk_id, chunk.source, question, answer, verdict.reason,
                          verdict.support))
    return items


def _examples(settings: SynthSettings, request: SynthRequest, plan: list[Chunk],
              items: dict[str, list[Item]]):
    from chatbot.prompts import load_template

    template = load_template(settings.data.template)
    search = settings.engine.search or (lambda query, k: [])
    examples = [training_example(item, number, chunk, search, settings.k, template,
                                 settings.data.bot_name, request.seed)
                for chunk in plan
                for number, item in enumerate(items[chunk.chunk_id]) if item.kept]
    if not examples:
        reasons = sorted({i.reason for found in items.values() for i in found})
        raise DataError(f"none of the generated items passed the filters ({', '.join(reasons)}); "
                        f"each teacher call and its verdict is in "
                        f"{work_dir(settings.data.datasets_root, request.name) / CALLS}. "
                        "A larger teacher variant writes usable questions and answers")
    return examples


def _counter(data):
    from chatbot.models import resolve_model
    from training.data.token_lengths import chat_counter

    return chat_counter(resolve_model(data.chat_model, data.model_base_dir), data.chat_model)
