"""Offline A/B of variants on held-out data: answers through the engine, per-item metrics, paired
comparisons against the first (baseline) variant, reports, and a promotion gate.

    chatbot eval --variants prompt,finetuned --data heldout.jsonl --gate "token_f1>=0"

From Python (``chatbot train --eval-gate`` calls this after training)::

    result = run_gate(eval_settings(config), ["prompt", "my-adapter"], "heldout.jsonl",
                      "token_f1>=0")
    result.passed
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from chatbot.adapters import AdapterManifest, registered_adapters
from chatbot.engine import Engine
from chatbot.errors import InputError
from chatbot.paths import FOLDER_NAME, NAME_CHARS, DataPaths
from chatbot.variants import Variant
from index import manifest as index_manifest
from training.eval.evalset import EvalItem, load_items, repeated_questions
from training.eval.generations import CACHE_FILE, GenerationCache, GenerationRun, generate_all
from training.eval.metrics import BY_NAME, METRICS, score_answer
from training.eval.paired_stats import (Interval, PairedComparison, compare_paired,
                                        equal_differences_interval, mean_interval)
from training.eval.result import METRICS_FILE, EvalRecord, EvalResult, Gate, GateResult
from training.eval.settings import EvalSettings

GATE = re.compile(r"^\s*([a-z_@0-9]+)\s*(>=|<=)\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)"
                  r"(?:[eE][-+]?[0-9]+)?)\s*$")


GATE_MIN_ITEMS = 3
"""Paired items a gate needs: fewer give no interval worth promoting a variant on."""


def parse_gate(text: str) -> Gate:
    match = GATE.match(text)
    if not match or match.group(1) not in BY_NAME or not math.isfinite(float(match.group(3))):
        raise InputError(f"gate {text!r} is not METRIC>=NUMBER or METRIC<=NUMBER with a metric "
                         f"among {', '.join(BY_NAME)}, such as \"token_f1>=0\"")
    return Gate(match.group(1), match.group(2), float(match.group(3)))


def check_gate(result: EvalResult, gate: Gate, candidate: str) -> GateResult:
    """Pass only when the whole 95% interval of candidate - baseline clears the threshold:
    ``>=`` needs the lower bound at or above it, ``<=`` the upper bound at or below it. The
    interval is the wider of the paired bootstrap's and Student t's: on few items the
    bootstrap alone is too narrow and would promote a variant on noise."""
    comparison = result.comparisons.get(candidate, {}).get(gate.metric)
    if comparison is None or comparison.n < GATE_MIN_ITEMS:
        n = comparison.n if comparison else 0
        return GateResult(gate, candidate, result.baseline, False, None,
                          f"gate {gate}: {n} paired item(s) have {gate.metric}; need at least "
                          f"{GATE_MIN_ITEMS}")
    diff = comparison.interval
    bound = diff.low if gate.op == ">=" else diff.high
    passed = check_bound(diff, gate)
    verdict = "passed" if passed else "failed"
    side = "lower" if gate.op == ">=" else "upper"
    return GateResult(gate, candidate, result.baseline, passed, diff,
                      f"gate {gate} {verdict}: {candidate} - {result.baseline} = "
                      f"{diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}], {side} bound "
                      f"{bound:+.4f} vs {gate.threshold:g} (n={comparison.n})"
                      + ("" if passed else _equal_differences_note(comparison, gate)))


def _equal_differences_note(comparison: PairedComparison, gate: Gate) -> str:
    """Why a gate failed although every item moved the right way: how many such items the
    binomial bound needs (empty when the differences don't clear the threshold themselves)."""
    difference = comparison.difference.mean
    clears = difference >= gate.threshold if gate.op == ">=" else difference <= gate.threshold
    if comparison.difference_bound is None or not clears or difference == gate.threshold:
        return ""
    value_range = BY_NAME[gate.metric].value_range
    needed = next((n for n in range(comparison.n + 1, 10_001)
                   if check_bound(equal_differences_interval(difference, n, value_range), gate)),
                  None)
    return (f"; all {comparison.n} differences are equal ({difference:+g}): an exact binomial "
            "bound " + (f"clears {gate.threshold:g} only from {needed} such items" if needed
                        else "has no finite bound on this metric"))


def check_bound(interval: Interval, gate: Gate) -> bool:
    """The gate's rule: the whole interval on the threshold's passing side."""
    if gate.op == ">=":
        return interval.low >= gate.threshold
    return interval.high <= gate.threshold


def score_run(items: list[EvalItem], run: GenerationRun, encode: Callable | None
              ) -> dict[str, list[dict]]:
    """Every metric of every answer; an item a variant could not answer (an empty question, a
    prompt too long for its window) has none, so it is left out of that variant's means and
    of its paired comparisons instead of counting as a wrong answer."""
    scores = {}
    for name, answers in run.answers.items():
        scores[name] = [dict.fromkeys(BY_NAME) if g.error else score_answer(
            g.text, references=item.references, hits=g.hits, retrieval=g.retrieval,
            not_answerable=item.not_answerable, gold_ids=item.gold_ids,
            gold_texts=item.gold_texts, latency_ms=g.timings.get("total_ms"),
            refused=g.refused, encode=encode) for item, g in zip(items, answers)]
    return scores


def unanswered(items: list[EvalItem], run: GenerationRun) -> list[str]:
    """A warning per variant that could not answer some items, naming the first of them."""
    warnings = []
    for name, answers in run.answers.items():
        failed = [(item, g.error) for item, g in zip(items, answers) if g.error]
        if failed:
            item, error = failed[0]
            warnings.append(f"{name} could not answer {len(failed)} item(s), left out of its "
                            f"scores; the first, {item.id}: {error}")
    return warnings


def summarize(scores: dict[str, list[dict]]) -> dict[str, dict[str, tuple[Interval, int]]]:
    summaries = {}
    for name, rows in scores.items():
        summaries[name] = {}
        for spec in METRICS:
            values = [r[spec.name] for r in rows if r[spec.name] is not None]
            summaries[name][spec.name] = (mean_interval(values, spec.value_range), len(values))
    return summaries


def compare(scores: dict[str, list[dict]], baseline: str, candidates: list[str],
            min_effect: float) -> dict[str, dict[str, PairedComparison]]:
    """Paired comparisons on the items where both variants have the metric."""
    comparisons: dict[str, dict[str, PairedComparison]] = {}
    for candidate in candidates:
        comparisons[candidate] = {}
        for spec in METRICS:
            pairs = [(a[spec.name], b[spec.name])
                     for a, b in zip(scores[baseline], scores[candidate])
                     if a[spec.name] is not None and b[spec.name] is not None]
            if not pairs:
                continue
            base, cand = zip(*pairs)
            effect = None if spec.name in ("length", "latency_ms") else min_effect
            comparisons[candidate][spec.name] = compare_paired(
                base, cand, higher_is_better=spec.higher_is_better is not False,
                min_effect=effect, value_range=spec.value_range)
    return comparisons


def index_state(settings: EvalSettings) -> str | None:
    """What retrieval answers from: the indexed documents' hashes, the index settings and the
    retrieval settings. Not the manifest's generation or timestamp, so a sync that changed
    nothing keeps the cached answers."""
    manifest = index_manifest.read(settings.index_dir)
    if manifest is None:
        return None
    content = manifest.content()
    content["retrieval"] = dict(settings.retrieval)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def run_eval(settings: EvalSettings, variants: list[str], data: str, *, name: str | None = None,
             limit: int | None = None, min_effect: float = 0.05,
             max_new_tokens: int | None = None, engine: Engine | None = None,
             encode: Callable | None | bool = True,
             extra_variants: dict[str, Variant] | None = None,
             progress: Callable[[str, int, int], None] | None = None,
             gate: str | None = None, write: bool = True) -> EvalResult:
    """Answer ``data`` with every variant (greedy), score, compare to ``variants[0]``, and
    write ``<data_dir>/evals/NAME/`` (report.md, report.html, metrics.json). ``gate`` is
    checked for every candidate (``result.gates``)."""
    parsed_gate = parse_gate(gate) if gate else None
    if len(variants) < 2 or len(set(variants)) != len(variants):
        raise InputError(f"--variants needs two or more distinct names (baseline first), got "
                         f"{','.join(variants)}")
    file_warnings: list[str] = []
    items = load_items(data, settings.data_dir, limit, warn=file_warnings.append)
    name = name or default_name(data, limit)
    embedder = None
    if engine is None or encode is True:
        from chatbot.indexing import open_embedder

        embedder = open_embedder(settings.embedder)  # one copy for retrieval and similarity
    engine = engine or settings.engine(embedder, extra_variants or {})
    for variant in variants:
        engine.variant(variant)  # unknown names fail before any generation
    out_dir = DataPaths(settings.data_dir).eval(name)
    greedy = dataclasses.replace(engine.settings, temperature=0.0,
                                 max_new_tokens=max_new_tokens or engine.settings.max_new_tokens)
    state = index_state(settings)
    cache = GenerationCache(out_dir / CACHE_FILE, same_data_caches(out_dir))
    run = generate_all(engine, items, variants, greedy, cache, state, progress,
                       settings.model_base_dir)
    scores = score_run(items, run, embedder.encode if encode is True else (encode or None))
    result = EvalResult(name, data, items, variants, run, scores, summarize(scores),
                        compare(scores, variants[0], variants[1:], min_effect), min_effect)
    result.warnings += file_warnings + repeated_questions(items)
    result.warnings += unanswered(items, run)
    if state is None and any(run.settings[v]["retrieval"] for v in variants):
        result.warnings.append(f"no index in {settings.index_dir}: retrieval variants "
                               "answered without sources; run `chatbot index sync` first")
    if parsed_gate:
        result.gates = [check_gate(result, parsed_gate, c) for c in result.candidates]
    if write:
        from training.eval.report import write_reports

        result.out_dir = out_dir
        write_reports(result, out_dir)
    return result


def run_gate(settings: EvalSettings, variants: list[str], data: str, gate: str,
             **kwargs) -> GateResult:
    """Evaluate and check ``gate`` for the last variant against the first; the reports are
    written either way. Pass ``extra_variants`` for an adapter not registered yet."""
    result = run_eval(settings, variants, data, gate=gate, **kwargs)
    return result.gates[-1]


def gate_check(settings: EvalSettings, name: str, gate: str, data: str, baseline: str,
               limit: int | None = None) -> Callable[[Path], None]:
    """For ``chatbot train --eval-gate``: a check of a staged adapter against ``baseline``
    that raises (so the adapter is not registered) unless ``gate`` passes."""
    from training.errors import TrainingError

    parse_gate(gate)
    items = check_eval_inputs(settings, data, baseline, limit)
    if len(items) < GATE_MIN_ITEMS:  # known now, not after the training run
        held = (f"--eval-limit {limit} keeps {len(items)}; raise --eval-limit" if limit
                else f"{data!r} holds {len(items)}; add questions or give another --eval-data")
        raise InputError(f"--eval-gate compares on at least {GATE_MIN_ITEMS} held-out "
                         f"questions, and {held}")
    eval_name = f"gate-{name}"
    if not FOLDER_NAME.match(eval_name):  # known now, not after the training run
        raise InputError(f"--eval-gate writes its report to evals/{eval_name}, which is not a "
                         f"usable folder name; give --name at most {NAME_CHARS - len('gate-')} "
                         "characters")

    def check(staged: Path) -> None:
        candidate = adapter_variant(settings, name, staged, baseline)
        result = run_gate(settings, [baseline, name], data, gate, limit=limit,
                          name=eval_name, extra_variants={name: candidate})
        failure = DataPaths(settings.data_dir).run(name) / GATE_FAILED
        if result.passed:
            failure.unlink(missing_ok=True)
            return
        report = DataPaths(settings.data_dir).eval(eval_name) / "report.md"
        if failure.parent.is_dir():  # the run's checkpoints, which --resume would register
            failure.write_text(json.dumps({"gate": gate, "message": result.message,
                                           "report": str(report)}))
        raise TrainingError(f"evaluation gate failed: {result.message}; {name!r} was not "
                            f"registered (report: {report})")

    return check


GATE_FAILED = "gate-failed.json"
"""Left in the run's folder when its adapter failed the gate: a ``--resume`` without a gate
would otherwise register that adapter unevaluated."""


def failed_gate(data_dir: Path, name: str) -> str | None:
    """The gate run ``name`` last failed, or None (no failure on record)."""
    failure = DataPaths(data_dir).run(name) / GATE_FAILED
    return json.loads(failure.read_text())["gate"] if failure.is_file() else None


def adapter_scorer(settings: EvalSettings, metric: str, data: str, baseline: str,
                   eval_name: str, limit: int | None = None) -> Callable[[str, Path], float]:
    """For ``chatbot train sweep --objective METRIC``: ``score(name, adapter_dir)``, the mean
    of ``metric`` over ``data`` for an adapter not registered yet. Every call writes the same
    eval (``eval_name``), so the baseline's answers are generated once and then cached."""
    spec = BY_NAME.get(metric)
    if spec is None or spec.higher_is_better is not True:
        usable = ", ".join(m.name for m in METRICS if m.higher_is_better)
        raise InputError(f"objective {metric!r} is not a metric that improves upward; use "
                         f"val_loss or one of {usable}")
    check_eval_inputs(settings, data, baseline, limit)

    def score(name: str, adapter_dir: Path) -> float:
        candidate = adapter_variant(settings, name, adapter_dir, baseline)
        result = run_eval(settings, [baseline, name], data, name=eval_name, limit=limit,
                          extra_variants={name: candidate})
        interval, count = result.summaries[name][metric]
        if not count:
            raise InputError(f"metric {metric!r} has no value on {data} (it needs fields "
                             "these items lack); choose another --objective")
        return interval.mean

    return score


def default_name(data: str, limit: int | None = None) -> str:
    """An eval's name when ``--out`` gives none: the data file's (or dataset's) name, as a
    folder name (``my questions.jsonl``: ``my-questions``), and ``-firstN`` for a ``--limit N``
    run, so that a quick look never replaces the reports of a run on every item."""
    suffix = f"-first{limit}" if limit else ""
    if len(suffix) >= NAME_CHARS:
        raise InputError(f"--limit {limit} is more items than any data holds; leave --limit out "
                         "to evaluate every item")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data).stem).strip("._-") or "eval"
    return stem[:NAME_CHARS - len(suffix)] + suffix


def same_data_caches(out_dir: Path) -> list[Path]:
    """The answer caches of the evals that differ from ``out_dir``'s by ``--limit`` alone
    (``DATA`` and ``DATA-firstN``): a full run after a trial answers only the items the trial
    did not, and a trial after a full run answers none."""
    base = re.sub(r"-first[0-9]+$", "", out_dir.name)
    same_data = re.compile(re.escape(base) + r"(-first[0-9]+)?")
    evals = out_dir.parent
    names = sorted(path.name for path in evals.iterdir()) if evals.is_dir() else []
    return [evals / name / CACHE_FILE for name in names
            if name != out_dir.name and same_data.fullmatch(name)]


def keep_larger_run(data_dir: Path, name: str, limit: int) -> None:
    """Refuse a ``--limit`` run into an eval that holds more items: its reports would replace
    those of the larger run (a damaged ``metrics.json`` has nothing left to keep)."""
    metrics = DataPaths(data_dir).eval(name) / METRICS_FILE
    try:
        held = EvalRecord.load(metrics).items if metrics.is_file() else 0
    except InputError:
        return
    if held > limit:
        raise InputError(f"eval {name!r} holds the results of {held} items; a --limit {limit} "
                         f"run would replace them: give --out another name (or none: a "
                         f"limited run's default name ends in -first{limit}), or delete "
                         f"{metrics.parent} first")


def check_eval_inputs(settings: EvalSettings, data: str, baseline: str,
                      limit: int | None) -> list[EvalItem]:
    """What the evaluation after a training run reads, checked before the run starts: a
    missing file or an unknown baseline would otherwise cost the whole run. Returns the
    items."""
    known = [*settings.variants, *registered_adapters(DataPaths(settings.data_dir).adapters)]
    if baseline not in known:
        raise InputError(f"--eval-baseline {baseline!r} is not a variant; variants: "
                         f"{', '.join(known)}")
    return load_items(data, settings.data_dir, limit)


def adapter_variant(settings: EvalSettings, name: str, adapter_dir: Path,
                    baseline: str) -> Variant:
    """An unregistered adapter as a variant served like ``baseline`` (its template, retrieval
    and k), with the prompt template it was trained on."""
    base = settings.variants.get(baseline)
    manifest = AdapterManifest.load(adapter_dir)
    template = manifest.template or (base.template if base else "rag")
    return manifest.variant(name, adapter_dir, settings.chat_model, template,
                            base.retrieval if base else True, base.k if base else None)
