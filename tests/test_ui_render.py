"""How answers' sources and timings are rendered for the page (plain functions, no gradio)."""

import re

from app.ui.render import cited_numbers, meta_line, sources_html
from app.ui.support import answer_markup, support_line, supporting_spans
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


def test_meta_line_names_variant_and_timings() -> None:
    line = meta_line("prompt", {"first_token_ms": 1260.0, "tokens_per_s": 15.04,
                                "total_ms": 9000.0}, filtered=["pii"])
    assert "variant <b>prompt</b>" in line and "first token 1.26 s" in line
    assert "15.0 tokens/s" in line and "total 9.00 s" in line and "filters: pii" in line
    assert meta_line(None, {}) == ""


def test_supported_sentences_link_to_their_highlighted_sentence_and_the_rest_is_marked() -> None:
    from chatbot.attribution import AttributionSettings, Attributor

    passage = "Intro line. Run chatbot index sync docs/ to index."
    hits = [Hit(Chunk("a", "docs/indexing.md", passage, "", "h"), 0.5, 1)]
    text = "Run the sync on docs/. The sync also emails your whole team. Sure!"
    attribution, _ = Attributor(None, AttributionSettings(policy="flag")).judge(text, [passage])
    markup = answer_markup(text, attribution, "src-2")
    panel = sources_html(hits, "src-2", highlights=supporting_spans(attribution))
    targets = re.findall(r'href="#([^"]+)"', markup)
    assert targets == ["src-2-1-s12"] and f'id="{targets[0]}"' in panel  # the link lands
    assert ('<mark class="cb-support" id="src-2-1-s12">Run chatbot index sync docs/ to index.'
            '</mark>') in panel
    assert markup.startswith('<div class="cb-flag">Only 37% of this answer is supported')
    assert ('<span class="cb-unsupported" title="No source passage supports this sentence">'
            'The sync also emails your whole team.</span> Sure!') in markup
    assert "Run the sync on docs/." in markup and "unsupported" in support_line(attribution)


def test_a_withheld_answer_shows_only_the_message_and_no_highlights() -> None:
    from chatbot.attribution import AttributionSettings, Attributor

    attributor = Attributor(None, AttributionSettings(policy="withhold"))
    attribution, shown = attributor.judge("The sync also emails your whole team.", ["Other."])
    assert answer_markup(shown, attribution, "src-1") == shown != attribution.withheld_text
    assert supporting_spans(attribution) == {} and "withheld" in support_line(attribution)


def test_sentences_in_code_and_tables_are_left_unmarked() -> None:
    """A mark inside a code block shows as a raw tag, and one around a table row breaks the
    table; the prose around them is still marked."""
    from chatbot.attribution import AttributionSettings, Attributor

    text = ("The sync also emails your whole team.\n\n"
            "    chatbot index sync --email-everyone now.\n\n"
            "| Option | Effect |\n|---|---|\n| --email | Emails the whole team. |\n\n"
            "```\nEmails go out at noon.\n```\n\nIt also prints the weekly summary report.")
    attribution, _ = Attributor(None, AttributionSettings(policy="show")).judge(
        text, ["Nothing about any of this."])
    markup = answer_markup(text, attribution, "src-1")
    assert [line for line in markup.splitlines() if "<span" in line] == [
        '<span class="cb-unsupported" title="No source passage supports this sentence">'
        'The sync also emails your whole team.</span>',
        '<span class="cb-unsupported" title="No source passage supports this sentence">'
        'It also prints the weekly summary report.</span>']
