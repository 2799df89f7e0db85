"""Build a fine-tuning dataset from the conversation log and imported transcripts.

``build_dataset`` reads the sources, runs the curation steps (``training.data.steps``) and writes
``<data_dir>/datasets/NAME/`` (see ``training.data.dataset``) through a temporary directory that
is renamed at the end, so a failed build leaves nothing behind. The CLI and the web UI's
Training tab both call it.

    chatbot data build --name support-v1 --from logs --from samples/transcripts.jsonl
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, Iterator, Sequence

from chatbot.models import file_sha256
from chatbot.paths import check_name
from index.jsonfile import replacing
from index.text import counted
from training.data import dataset as store
from training.errors import DataError
from training.data.from_log import as_context
from training.data.report import BuildSummary, render_report, token_stats, write_histogram
from training.data.settings import DataSettings
from training.data.steps import CurateOptions, Curated, curate, nothing_to_train_on
from training.data.token_lengths import TokenCounter
from training.data.transcript_rows import EXPORT_CSV_COLUMNS
from training.data.transcripts import Conversation, ImportResult, read_transcripts
from training.synth.progress import work_dir

LOGS = "logs"


def dataset_path(settings: DataSettings, name: str) -> Path:
    return settings.datasets_root / check_name("dataset", name)


def build_dataset(settings: DataSettings, name: str, sources: Sequence[str | Path] = (),
                  strict: bool = False, overwrite: bool = False,
                  options: CurateOptions | None = None,
                  counter: TokenCounter | None = None) -> BuildSummary:
    """Build dataset ``name`` from ``sources`` (files, or ``"logs"`` for the conversation log).

    Returns the summary that ``data_report.md`` and ``chatbot data build --json`` show.
    """
    started = time.perf_counter()
    target = dataset_path(settings, name)
    if target.exists() and not overwrite:
        raise DataError(f"dataset {name!r} already exists at {target}; choose another name or "
                        "pass --overwrite")
    files = [Path(s) for s in sources if str(s) != LOGS]
    _require_files(files)
    options = options or settings.options
    timings, clock = {}, time.perf_counter()
    imported = read_transcripts(files, settings.qa_fields, strict=strict)
    logged = (_read_log(settings, strict, options.corrections)
              if any(str(s) == LOGS for s in sources) else None)
    timings["read"], clock = _lap(clock)
    template = _load_template(settings.template)
    conversations = _prepare_imports(settings, imported.conversations, template)
    everything = (logged.conversations if logged else []) + conversations
    if not everything:
        raise DataError(_nothing_message(imported, logged, files))
    timings["render"], clock = _lap(clock)
    counter = counter or _chat_counter(settings)
    timings["load_tokenizer"], clock = _lap(clock)
    curated = curate(everything, options, counter)
    timings["curate"], clock = _lap(clock)
    if (empty := nothing_to_train_on(curated)) is not None:
        raise DataError(f"{empty}; no dataset was written")
    summary = _summary(settings, name, target, files, logged, imported, curated, template, counter)
    _write(target, summary, curated, options, overwrite)
    timings["write"], clock = _lap(clock)
    return replace(summary, seconds={**timings, "total": round(clock - started, 3)})


def _require_files(files: list[Path]) -> None:
    """A file named as a source must be there: a typo would otherwise build from the rest."""
    for path in files:
        if not path.exists():
            raise DataError(f"transcript file {path} not found; check the path given to --from")
        if not path.is_file():
            raise DataError(f"{path} is not a file; give --from a .jsonl, .json or .csv "
                            "transcript file")


def _lap(since: float) -> tuple[float, float]:
    now = time.perf_counter()
    return round(now - since, 3), now


def _load_template(name: str):
    from chatbot.prompts import load_template

    return load_template(name)


def _prepare_imports(settings: DataSettings, conversations: list[Conversation],
                     template) -> list[Conversation]:
    """Imported conversations rendered the way serving renders a question, so the model is
    trained on the prompt shape it will be served with (see ``_render_import``)."""
    if not settings.render_with_template:
        return conversations
    return [_render_import(c, template, settings.bot_name) for c in conversations]


def _render_import(conversation: Conversation, template, bot_name: str) -> Conversation:
    """Serving sends ``build_messages(template, question, hits, history)``; a conversation
    without a system message of its own gets the same (with no retrieved passages). One that
    brings its own (for example a re-imported export) is kept as it is."""
    from chatbot.prompts import build_messages

    messages = conversation.messages
    if any(m.role == "system" for m in messages):
        return conversation
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    history = list(messages[:last_user])
    rendered = build_messages(template, messages[last_user].content, [], history=history,
                              bot_name=bot_name)
    examples = 1 + len(template.examples())  # the template's few-shot answers: context only
    final = (rendered[0], *as_context(rendered[1:examples]), *rendered[examples:],
             *messages[last_user + 1:])
    meta = {**conversation.meta, "rendered_with": template.name}
    return replace(conversation, messages=final, dialogue=messages, meta=meta)


def _read_log(settings: DataSettings, strict: bool, corrections: str = "prefer"
              ) -> ImportResult:
    from training.data.from_log import read_log

    result = read_log(settings.log_path, with_sources=settings.log_sources,
                      template_for=_variant_templates(settings), bot_name=settings.bot_name,
                      corrections=corrections)
    if strict and result.problems:
        raise DataError(f"{counted(len(result.problems), 'unusable answer')} in the log (strict "
                        f"mode), the first: {result.problems[0]}")
    return result


def _variant_templates(settings: DataSettings):
    """A variant's prompt template by name (the default variant's for unknown ones), cached."""
    loaded: dict[str, object] = {}

    def template_for(variant: str | None):
        name = settings.variant_templates.get(variant or "", settings.default_variant_template)
        if name not in loaded:
            loaded[name] = _load_template(name)
        return loaded[name]

    return template_for


def _chat_counter(settings: DataSettings) -> TokenCounter:
    from chatbot.models import resolve_model
    from training.data.token_lengths import chat_counter

    return chat_counter(resolve_model(settings.chat_model, settings.model_base_dir),
                        settings.chat_model)


def _nothing_message(imported: ImportResult, logged: ImportResult | None, files: list[Path]
                     ) -> str:
    problems = imported.problems + (logged.problems if logged else [])
    if problems:
        return (f"no valid conversation to build from: {counted(len(problems), 'problem')}, "
                f"the first: {problems[0]}")
    if not files and logged is None:
        return "nothing to build from; pass --from logs and/or --from FILE"
    if not files:
        return ("the conversation log has no finished answers yet; chat with the bot first, "
                "or import transcripts with --from FILE")
    held = f"{files[0]} holds none" if len(files) == 1 else (
        f"none of {', '.join(map(str, files))} holds one")
    log = (", and the conversation log has no finished answers yet" if logged is not None
           else "")
    return (f"no conversation to build from: {held}{log}; give --from a transcript of "
            "conversations (one JSON object a line, or a CSV of questions and answers)")


def _summary(settings: DataSettings, name: str, target: Path, files: list[Path],
             logged: ImportResult | None, imported: ImportResult, curated: Curated, template,
             counter: TokenCounter) -> BuildSummary:
    halves = curated.split
    final = halves.train + halves.validation
    lengths = [curated.lengths[c.id] for c in final]
    sources = [{"path": str(f), "sha256": file_sha256(f)} for f in files if f.is_file()]
    logged = logged or ImportResult([], [], 0)
    if logged.records:
        log_path = settings.log_path
        # No file hash: reading the live database with open() in a process that holds it (the
        # server's Training tab) drops that process's SQLite locks, and the next process to
        # close the log deletes the write-ahead log the server is still writing.
        sources.insert(0, {"path": str(log_path), "answers": logged.records})
    problems = imported.problems + logged.problems
    return BuildSummary(
        name=name, path=str(target), report=str(target / "data_report.md"),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        sources=sources, records_read=imported.records + logged.records,
        imported=len(imported.conversations), logged=len(logged.conversations),
        skipped=imported.skipped + logged.skipped, problem_count=len(problems),
        problems=[str(p) for p in problems[:50]],
        train=len(halves.train), validation=len(halves.validation),
        train_turns=sum(c.count("assistant") for c in halves.train),
        validation_turns=sum(c.count("assistant") for c in halves.validation),
        moved_to_train=len(halves.moved), review=len(curated.review),
        corrected=sum(1 for c in final if c.meta.get("corrected")),
        warnings=_warnings(halves),
        pii=curated.pii_counts, pii_detector=curated.pii_detector,
        tokens=token_stats([x.total for x in lengths], [x.supervised for x in lengths]),
        chat_model=settings.chat_model, tokenizer=counter.name,
        **_model_identity(settings, counter),
        template=template.name, template_hash=template.hash,
        render_with_template=settings.render_with_template,
        steps=[{"name": step.name, "in": step.conversations_in,
                "out": step.conversations_out, "dropped": step.dropped,
                "seconds": step.seconds, "cpu_seconds": step.cpu_seconds}
               for step in curated.steps],
    )


def _write(target: Path, summary: BuildSummary, curated: Curated, options: CurateOptions,
           overwrite: bool) -> None:
    def fill(work: Path) -> None:
        halves = curated.split
        store.save_examples(work, halves.train, halves.validation)
        store.write_jsonl(work / "export.jsonl",
                          store.export_records(halves.train + halves.validation))
        store.write_jsonl(work / "review_thumbs_down.jsonl", store.review_records(curated.review))
        write_histogram(work / "token_lengths.png",
                        [curated.lengths[c.id].total for c in halves.train],
                        [curated.lengths[c.id].total for c in halves.validation],
                        (options.min_tokens, options.max_tokens))
        steps = [asdict(step) for step in curated.steps]
        (work / "data_report.md").write_text(render_report(summary, steps, curated.pii_examples),
                                             encoding="utf-8")
        _manifest(summary, steps, options, halves).save(work)

    store.write_directory(target, overwrite, fill)


def _warnings(halves) -> list[str]:
    """Problems a fine-tune would hit with this dataset, said at build time."""
    found = []
    if not halves.validation:
        found.append("the validation split is empty (too few conversations, or all moved to "
                     "train as near-duplicates); fine-tuning needs validation examples: add "
                     "conversations or raise data.validation_share")
    return found


def _model_identity(settings: DataSettings, counter: TokenCounter) -> dict[str, str | None]:
    """Fingerprint and chat template hash of the chat model whose tokenizer measured lengths."""
    from chatbot.models import chat_template_hash, model_fingerprint, resolve_model

    tokenizer = getattr(counter, "tokenizer", None)
    return {"chat_model_fingerprint":
            model_fingerprint(resolve_model(settings.chat_model, settings.model_base_dir)),
            "chat_template_hash": chat_template_hash(tokenizer) if tokenizer else None}


def _manifest(summary: BuildSummary, steps: list[dict], options: CurateOptions,
              halves) -> store.DatasetManifest:
    return store.DatasetManifest(
        name=summary.name, created_at=summary.created_at, sources=summary.sources,
        options=asdict(options), steps=steps, counts=summary.counts(),
        pii=summary.pii, pii_detector=summary.pii_detector, tokens=summary.tokens,
        chat_model=summary.chat_model,
        chat_model_fingerprint=summary.chat_model_fingerprint,
        chat_template_hash=summary.chat_template_hash,
        template=summary.template, template_hash=summary.template_hash,
        render_with_template=summary.render_with_template,
        sha256=store.examples_sha256(halves.train, halves.validation))


def read_dataset_manifest(settings: DataSettings, name: str) -> store.DatasetManifest:
    return store.DatasetManifest.load(_existing(settings, name))


def list_datasets(settings: DataSettings) -> list[dict]:
    """Name, kind, creation time and split sizes of every dataset of the bot (a preference
    dataset's ``train``/``validation`` count its rows and pairs together; ``counts`` has each).
    One whose manifest can't be read is listed with its ``problem``, the others as ever."""
    root = settings.datasets_root
    found = []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if (directory / store.MANIFEST).is_file() and not directory.name.startswith("."):
            entry = {"name": directory.name, "path": str(directory)}
            try:
                manifest = store.DatasetManifest.load(directory)
                counts = manifest.counts
                entry |= {"kind": manifest.kind, "created_at": manifest.created_at,
                          "train": counts["train"], "validation": counts["validation"],
                          "counts": counts}
            except (DataError, KeyError, TypeError) as exc:
                why = str(exc) if isinstance(exc, DataError) else (  # which ends in REBUILD
                    f"{directory / store.MANIFEST} has no train and validation counts; "
                    f"{store.REBUILD}")
                entry["problem"] = f"{why}, or delete {directory}"
            found.append(entry)
    return found


def newest_dataset(datasets: list[dict]) -> str | None:
    """The name of the dataset built last among ``datasets`` (``list_datasets`` entries that
    could be read): by creation time, then by the manifest's write time, since ``created_at``
    counts whole seconds and two datasets may be built in one."""
    def built(dataset: dict) -> tuple[str, int]:
        return dataset["created_at"], (Path(dataset["path"]) / store.MANIFEST).stat().st_mtime_ns

    return max(datasets, key=built)["name"] if datasets else None


EXPORT_FORMATS = ("jsonl", "csv")


def export_dataset(settings: DataSettings, name: str, out: Path | None,
                   fmt: str = "jsonl") -> int:
    """Write the dataset's examples (train then validation) to ``out`` (None: standard
    output); return how many.

    ``jsonl`` is OpenAI JSONL, to edit and build from again; ``csv`` is one message a row
    (``EXPORT_CSV_COLUMNS``) for reviewers' spreadsheets, every cell safe to open there.
    """
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"export format {fmt!r} is unknown; expected one of "
                        f"{', '.join(EXPORT_FORMATS)}")
    directory = _existing(settings, name)
    kind = store.DatasetManifest.load(directory).kind
    if kind != "sft":
        raise DataError(f"dataset {name!r} is a {kind} dataset; its rows are JSONL files "
                        f"already, in {directory}")
    if fmt == "csv":
        from chatbot.spreadsheet import write_csv

        splits = store.load_examples(directory)
        rows = [(row["conversation_id"], split, n, message["role"], message["content"])
                for split in ("train", "validation") for row in splits[split]
                for n, message in enumerate(row["messages"], start=1)]
        with _writing(out, newline="") as handle:
            write_csv(handle, EXPORT_CSV_COLUMNS, rows)
        return len({(row[0], row[1]) for row in rows})
    text = (directory / "export.jsonl").read_text(encoding="utf-8")
    with _writing(out) as handle:
        handle.write(text)
    return text.count("\n")


@contextlib.contextmanager
def _writing(out: Path | None, newline: str | None = None) -> Iterator[IO]:
    """Standard output, or ``out`` replaced once written whole (one cut short leaves the
    earlier file)."""
    if out is None:
        yield sys.stdout
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out, newline=newline) as handle:
        yield handle


def _existing(settings: DataSettings, name: str) -> Path:
    directory = dataset_path(settings, name)
    if not directory.is_dir():
        raise DataError(_missing_dataset(settings, name))
    return directory


def _missing_dataset(settings: DataSettings, name: str) -> str:
    """Why there is no dataset ``name`` and what makes one: a synthesis run that left its work
    folder but no dataset is to be rerun, not replaced by ``chatbot data build``."""
    known = ", ".join(d["name"] for d in list_datasets(settings)) or "none yet"
    missing = f"no dataset {name!r} in {settings.datasets_root} (datasets: {known})"
    synth = work_dir(settings.datasets_root, name)
    if synth.is_dir():
        return (f"{missing}; `chatbot data synth --name {name}` left no dataset, only its "
                f"progress and teacher calls in {synth}: rerun it, with a larger --teacher if "
                "none of its items passed the filters")
    return (f"{missing}; build it with `chatbot data build --name {name}`, or from the indexed "
            f"documents with `chatbot data synth --name {name} --teacher VARIANT`")
