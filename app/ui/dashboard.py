"""The Dashboard tab: the A/B report of ``chatbot ab report`` in the browser, computed as the
tab opens and on Refresh: thumbs-up rates with Wilson intervals, arena win rates and
Bradley-Terry strengths, votes still needed, and the chart. Run it with ``chatbot serve``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import gradio as gr

from chatbot.ab import AbStore


NO_VOTES_HERE = ("No arena votes yet. To compare the variants, open the Arena tab, ask a question "
                 "and vote for the better of the two answers; the results show here (press "
                 "Refresh).")
SPLIT_OFF = ("The A/B split is off (ab.enabled in the config), so no chat session is sent to a "
             "variant and no thumbs are compared here; turn it on and restart `chatbot serve` "
             "to compare the variants' thumbs-up rates.")


class DashboardActions:
    """``refresh() -> (report Markdown, chart image)``; callable without a server.
    ``splitting``: ``ab.enabled``, whether chat sessions are sent to the variants at all."""

    def __init__(self, store: AbStore, variants: Sequence[str], min_effect: float = 0.05,
                 alpha: float = 0.05, power: float = 0.8, bootstrap: int = 500,
                 splitting: bool = True) -> None:
        self.store = store
        self.variants = list(variants)
        self.settings = (min_effect, alpha, power, bootstrap)
        self.splitting = splitting
        self.on_tab_open: list[tuple] = []
        """(function, outputs) pairs ``build_app`` runs each time the tab is opened."""

    def refresh(self) -> tuple:
        from PIL import Image

        from chatbot.ab_report import (NO_RATINGS, NO_VOTES, build_report, chart_png,
                                       render_markdown)

        report = build_report(self.store, self.variants, *self.settings)
        # the command line's note sends the reader to the web page; here is that page
        said_here = {NO_VOTES: NO_VOTES_HERE, **({} if self.splitting else {NO_RATINGS: SPLIT_OFF})}
        report.notes = [said_here.get(note, note) for note in report.notes]
        return render_markdown(report), Image.open(io.BytesIO(chart_png(report)))


def build_dashboard_tab(store: AbStore, variants: Sequence[str], min_effect: float = 0.05,
                        alpha: float = 0.05, power: float = 0.8, bootstrap: int = 500,
                        splitting: bool = True) -> DashboardActions:
    """Lay out the Dashboard tab inside the current ``gr.Blocks``; it fills as the tab opens
    (``build_app`` wires ``on_tab_open``) and on Refresh."""
    actions = DashboardActions(store, variants, min_effect, alpha, power, bootstrap, splitting)
    refresh = gr.Button("Refresh", size="sm", elem_id="cb-dashboard-refresh")
    report = gr.Markdown("_Computing the report..._", elem_id="cb-dashboard")
    chart = gr.Image(label="Chart", type="pil", interactive=False, elem_id="cb-dashboard-chart")
    refresh.click(actions.refresh, None, [report, chart])
    actions.on_tab_open.append((actions.refresh, [report, chart]))
    return actions
