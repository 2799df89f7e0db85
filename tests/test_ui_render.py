"""How answers' sources and timings are rendered for the page (plain functions, no gradio)."""

from pathlib import Path

from app.ui.render import cited_numbers, meta_line, short_source, sources_html
from index.types import Chunk, Hit


def test_cited_numbers_are_the_real_sources_an_answer_names() -> None:
    assert cited_numbers("See [1, 2] and [2][3]; not [9] or [x].", 3) == {1, 2, 3}
    assert cited_numbers("No citations here.", 3) == set()


def test_sources_are_numbered_from_one_escaped_and_anchored() -> None:
    hits = [Hit(Chunk("a", "/elsewhere/a.md", "x < y & <script>", "", "h"), 0.5, 0),
            Hit(Chunk("b", "b.md", "plain", "Intro", "h"), 0.25, 1)]
    html = sources_html(hits, "src-3", cited={2})
    assert html.index('id="src-3-1"') < html.index('id="src-3-2"')
    assert "x &lt; y &amp; &lt;script&gt;" in html and "<script>" not in html
    assert html.count("cited</span>") == 1 and "b.md</code> · Intro · score 0.250" in html


def test_paths_under_the_working_folder_are_shown_relative() -> None:
    assert short_source(str(Path.cwd() / "docs" / "install.md")) == "docs/install.md"
    assert short_source("/elsewhere/a.md") == "/elsewhere/a.md"


def test_meta_line_names_variant_and_timings() -> None:
    line = meta_line("prompt", {"first_token_ms": 1260.0, "tokens_per_s": 15.04,
                                "total_ms": 9000.0}, filtered=["pii"])
    assert "variant <b>prompt</b>" in line and "first token 1.26 s" in line
    assert "15.0 tokens/s" in line and "total 9.00 s" in line and "filters: pii" in line
    assert meta_line(None, {}) == ""
