"""Reports of an offline eval: ``metrics.json`` for machines, ``report.md`` and a self-contained
``report.html`` (tables, an interval plot embedded as PNG, the largest regressions side by side).

Every mean is printed with its 95% interval and its n; no bare numbers.

    chatbot eval --variants prompt,finetuned --data heldout.jsonl   # writes <data_dir>/evals/NAME/
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

from index.jsonfile import replacing, write_bytes_atomic
from training.eval.metrics import BY_NAME, METRICS
from training.eval.paired_stats import Interval
from training.eval.result import METRICS_FILE, EvalResult

TOP_REGRESSIONS = 5


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else (f"{value:.3g}" if value >= 0.001 else "<0.001")


def primary_metric(result: EvalResult) -> str:
    """The gate's metric, else token F1, else the first metric every candidate has."""
    if result.gates:
        return result.gates[0].gate.metric
    shared = [m.name for m in METRICS
              if all(m.name in result.comparisons.get(c, {}) for c in result.candidates)]
    return "token_f1" if "token_f1" in shared else (shared[0] if shared else "length")


def _bounds(interval: Interval, spec: str = ".3f") -> str:
    """``[low, high]``, or why there is none: one item has no spread to give an interval."""
    if math.isnan(interval.low):
        return "[interval needs 2+ items]"
    return f"[{interval.low:{spec}}, {interval.high:{spec}}]"


def summary_rows(result: EvalResult) -> list[list[str]]:
    rows = []
    for spec in METRICS:
        cells = []
        for variant in result.variants:
            interval, n = result.summaries[variant][spec.name]
            cells.append(f"{_fmt(interval.mean)} {_bounds(interval)} n={n}" if n else "–")
        if any(c != "–" for c in cells):
            rows.append([spec.name, *cells])
    return rows


def comparison_rows(result: EvalResult, candidate: str) -> list[list[str]]:
    rows = []
    for name, comp in result.comparisons[candidate].items():
        d = comp.interval
        rows.append([name, f"{d.mean:+.3f} {_bounds(d, '+.3f')}", _p(comp.wilcoxon_p),
                     _p(comp.permutation_p), f"{comp.wins}/{comp.ties}/{comp.losses}",
                     str(comp.n), _fmt(comp.min_detectable), comp.warning or ""])
    return rows


COMPARISON_HEAD = ["metric", "difference [95% CI]", "Wilcoxon p", "permutation p",
                   "win/tie/loss", "n", "min. detectable", "note"]


def regressions(result: EvalResult, candidate: str, metric: str) -> list[dict]:
    """Items where the candidate lost most on ``metric`` (direction-aware)."""
    sign = -1 if BY_NAME[metric].higher_is_better is False else 1
    rows = []
    for i, item in enumerate(result.items):
        a = result.scores[result.baseline][i][metric]
        b = result.scores[candidate][i][metric]
        if a is None or b is None or sign * (b - a) >= 0:
            continue
        rows.append({"item": item, "delta": b - a, "baseline": result.run.answers[
            result.baseline][i], "candidate": result.run.answers[candidate][i]})
    rows.sort(key=lambda r: sign * r["delta"])
    return rows[:TOP_REGRESSIONS]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _header_lines(result: EvalResult) -> list[str]:
    run = result.run
    rate = run.generated / (run.seconds / 60) if run.generated and run.seconds else None
    return [f"Data: {result.data} · {len(result.items)} items · variants "
            f"{', '.join(result.variants)} (baseline: {result.baseline})",
            f"Answers generated {run.generated}, reused from cache {run.reused}, "
            f"in {run.seconds:.0f} s" + (f" ({rate:.1f} answers/min)" if rate else ""),
            "Means with percentile bootstrap 95% intervals (2,000 resamples, seed 0), or, "
            "where every item scored alike, an exact binomial bound; differences are paired "
            "over the items both variants have the metric for.",
            *[f"Warning: {w}" for w in result.warnings]]


def render_markdown(result: EvalResult) -> str:
    parts = [f"# Evaluation {result.name}", "", *_header_lines(result), ""]
    parts += [g.message for g in result.gates] + [""] if result.gates else []
    parts += ["## Per variant", "", _md_table(["metric", *result.variants],
                                               summary_rows(result)), ""]
    metric = primary_metric(result)
    for candidate in result.candidates:
        parts += [f"## {candidate} vs {result.baseline}", "",
                  _md_table(COMPARISON_HEAD, comparison_rows(result, candidate)), "",
                  f"### Largest regressions on {metric}", ""]
        for row in regressions(result, candidate, metric):
            item = row["item"]
            parts += [f"- **{item.id}** ({row['delta']:+.3f}) {item.question}",
                      f"  - reference: {' | '.join(item.references) or '(not answerable)'}",
                      f"  - {result.baseline}: {row['baseline'].text}",
                      f"  - {candidate}: {row['candidate'].text}"]
        parts.append("")
    return "\n".join(parts)


def interval_plot(result: EvalResult) -> bytes:
    """PNG: each candidate's difference per metric with its 95% interval, around zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(c, m, comp) for c in result.candidates
            for m, comp in result.comparisons[c].items() if m not in ("length", "latency_ms")]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(rows), 2) + 1))
    for y, (candidate, metric, comp) in enumerate(rows):
        d = comp.interval
        ax.errorbar(d.mean, y, xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", capsize=3,
                    color="tab:green" if d.low > 0 else "tab:red" if d.high < 0 else "tab:gray")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{m} ({c})" for c, m, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"difference vs {result.baseline} (95% interval)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _sources_html(generation) -> str:
    items = "".join(f"<li>[{h.get('n')}] {html.escape(str(h.get('source')))}: "
                    f"{html.escape(str(h.get('text', ''))[:300])}</li>" for h in generation.hits)
    return f"<ul class=src>{items}</ul>" if items else "<p><i>no sources</i></p>"


def render_html(result: EvalResult, png: bytes) -> str:
    esc = html.escape
    parts = [f"<h1>Evaluation {esc(result.name)}</h1>"]
    parts += [f"<p>{esc(line)}</p>" for line in _header_lines(result)]
    parts += [f"<p><b>{esc(g.message)}</b></p>" for g in result.gates]
    parts += ["<h2>Per variant</h2>",
              _html_table(["metric", *result.variants], summary_rows(result)),
              f'<h2>Differences</h2><img alt="interval plot" src="data:image/png;base64,'
              f'{base64.b64encode(png).decode()}">']
    metric = primary_metric(result)
    for candidate in result.candidates:
        parts += [f"<h2>{esc(candidate)} vs {esc(result.baseline)}</h2>",
                  _html_table(COMPARISON_HEAD, comparison_rows(result, candidate)),
                  f"<h3>Largest regressions on {esc(metric)}</h3>"]
        for row in regressions(result, candidate, metric):
            item = row["item"]
            parts.append(
                f"<div class=reg><p><b>{esc(item.id)}</b> ({row['delta']:+.3f}) "
                f"{esc(item.question)}</p><p>reference: "
                f"{esc(' | '.join(item.references) or '(not answerable)')}</p><div class=side>"
                f"<div><h4>{esc(result.baseline)}</h4><p>{esc(row['baseline'].text)}</p>"
                f"{_sources_html(row['baseline'])}</div><div><h4>{esc(candidate)}</h4>"
                f"<p>{esc(row['candidate'].text)}</p>{_sources_html(row['candidate'])}</div>"
                "</div></div>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:"
             "collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;font-size:90%}"
             ".side{display:flex;gap:1em}.side>div{flex:1;background:#f6f6f6;padding:0 .5em}"
             ".src{font-size:80%;color:#555}.reg{border-top:1px solid #ddd}")
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Evaluation "
            f"{esc(result.name)}</title><style>{style}</style></head><body>"
            + "\n".join(parts) + "</body></html>")


def write_reports(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = interval_plot(result)
    paths = {"metrics": out_dir / METRICS_FILE, "markdown": out_dir / "report.md",
             "html": out_dir / "report.html", "plot": out_dir / "intervals.png"}
    result.record().save(paths["metrics"])
    # each replaced whole: a rerun cut short, or read meanwhile, never shows half a report
    with replacing(paths["markdown"]) as handle:
        handle.write(render_markdown(result))
    with replacing(paths["html"]) as handle:
        handle.write(render_html(result, png))
    write_bytes_atomic(paths["plot"], png)
    return paths
