"""``chatbot eval`` end to end on the tiny model over a real (hash-embedded) index: reports,
the generation cache (resume, new variants, changed settings) and the gate's exit codes."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from chatbot.config_file import load_config
from app.build import bot_index, eval_settings
from training.eval.evaluate import parse_gate, run_eval
from chatbot.errors import InputError
from training.eval.generations import CACHE_FILE, Generation, GenerationCache
from ctrl_c import a_dropped_ctrl_c, ctrl_c_once, started
from train_support import conversation

DATA = Path(__file__).parent / "data"
HELDOUT = str(DATA / "eval_heldout.jsonl")


@pytest.fixture
def eval_bot(tmp_path: Path, tiny_model_dir: Path) -> Path:
    from chatbot.indexing import sync_paths

    config = {"data_dir": str(tmp_path / "data"),
              "models": {"chat": str(tiny_model_dir), "embedder": "hash:64"},
              "index": {"paths": [str(DATA / "eval_docs")]},
              "retrieval": {"min_score": None, "k": 2},
              "generation": {"max_new_tokens": 6},
              "variants": {"plain": {"template": "plain", "retrieval": False},
                           "prompt": {"template": "rag"},
                           "prompt2": {"template": "rag"}},
              "default_variant": "plain"}
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(config))
    sync_paths(bot_index(load_config(path)))
    return path


def eval_cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["eval", "--config", str(config), "--data", HELDOUT, *args])


def test_eval_reports_every_metric_with_intervals(eval_bot: Path) -> None:
    result = eval_cli(eval_bot, "--variants", "plain,prompt", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["items"] == 6 and report["baseline"] == "plain"
    assert report["generation"] == {"generated": 12, "reused": 0,
                                    "seconds": report["generation"]["seconds"]}
    diff = report["comparisons"]["prompt"]["token_f1"]
    assert diff["n"] == 5  # the not-answerable item has no reference answer
    assert diff["difference"]["low"] <= diff["difference"]["mean"] <= diff["difference"]["high"]
    assert diff["wins"] + diff["ties"] + diff["losses"] == 5
    prompt, plain = report["summaries"]["prompt"], report["summaries"]["plain"]
    assert prompt["hit_at_k"]["n"] == 3 and "hit_at_k" not in plain  # gold ids, retrieval only
    assert prompt["semantic"]["n"] == plain["semantic"]["n"] == 5
    assert report["summaries"]["plain"]["abstention"]["n"] == 1
    out = load_config(eval_bot).data_path / "evals" / "eval_heldout"
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "prompt vs plain" in html
    markdown = (out / "report.md").read_text()
    assert "| token_f1 |" in markdown and "[" in markdown
    cached = [json.loads(line) for line in (out / CACHE_FILE).read_text().splitlines()]
    assert len(cached) == 12 and all(c["hits"] for c in cached if c["variant"] == "prompt")
    # item by item, who goes first alternating: a latency difference is not the run's order
    assert [c["variant"] for c in cached[:4]] == ["plain", "prompt", "prompt", "plain"]
    assert [c["item_id"] for c in cached[:4]] == [cached[0]["item_id"]] * 2 + [
        cached[2]["item_id"]] * 2


def strict_json(text: str):
    """JSON as other languages read it: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_and_metrics_file_are_valid_json_with_one_item(eval_bot: Path) -> None:
    result = eval_cli(eval_bot, "--variants", "plain,prompt", "--limit", "1", "--json")
    assert result.exit_code == 0, result.output
    report = strict_json(result.output[result.output.index("{"):])
    interval = report["comparisons"]["prompt"]["token_f1"]["difference_t"]
    assert interval["low"] is None and interval["high"] is None  # no interval from one item
    metrics = load_config(eval_bot).data_path / "evals" / "eval_heldout-first1" / "metrics.json"
    assert strict_json(metrics.read_text()) == report


def test_conversation_items_replay_the_reference_history(eval_bot: Path) -> None:
    config = load_config(eval_bot)
    result = run_eval(eval_settings(config), ["plain", "prompt"], HELDOUT, encode=None, write=False)
    second = result.items[-1]
    assert second.id == "conv:3" and second.question == "How do I add one?"
    assert [m.content for m in second.history] == [
        "What is a variant?", "A named way to answer: model, adapter, template and retrieval."]


def test_an_answer_holding_a_line_separator_is_read_back_from_the_cache(tmp_path) -> None:
    """The cache keeps answers as written (ensure_ascii=False): a U+2028 or U+0085 in one split
    its line when read back, and the answer was generated again at every rerun."""
    cache = GenerationCache(tmp_path / CACHE_FILE)
    answer = Generation("prompt", "q1", "h1", "s1", "Opening hours\u2028Monday\x85 to Friday.",
                        True)
    cache.add(answer)
    assert GenerationCache(tmp_path / CACHE_FILE).get("prompt", "h1", "s1") == answer


def test_cache_resumes_reuses_and_invalidates(eval_bot: Path) -> None:
    config = load_config(eval_bot)

    def run(variants: list[str], **options):
        return run_eval(eval_settings(config), variants, HELDOUT, name="eval_heldout",
                        encode=None, write=False, **options)

    first = run(["plain", "prompt"], limit=3)
    assert (first.run.generated, first.run.reused) == (6, 0)
    cache = config.data_path / "evals" / "eval_heldout" / CACHE_FILE
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])  # killed mid-write
    resumed = run(["plain", "prompt"])
    assert (resumed.run.generated, resumed.run.reused) == (7, 5)
    added = run(["plain", "prompt", "prompt2"])
    assert (added.run.generated, added.run.reused) == (6, 12)
    assert added.run.answers["prompt2"][0].text == added.run.answers["prompt"][0].text  # greedy
    longer = run(["plain", "prompt"], max_new_tokens=7)
    assert longer.run.generated == 12


def test_a_sync_that_changes_nothing_keeps_answers_and_a_changed_document_does_not(
        eval_bot: Path, tmp_path: Path) -> None:
    import shutil

    from chatbot.indexing import sync_paths

    docs = tmp_path / "docs"
    shutil.copytree(DATA / "eval_docs", docs)
    config = load_config(eval_bot)
    config.index.paths = [str(docs)]
    sync_paths(bot_index(config), rebuild=True)
    first = run_eval(eval_settings(config), ["plain", "prompt"], HELDOUT, limit=2, encode=None, write=False)
    sync_paths(bot_index(config))
    again = run_eval(eval_settings(config), ["plain", "prompt"], HELDOUT, limit=2, encode=None, write=False)
    assert (first.run.generated, again.run.generated, again.run.reused) == (4, 0, 4)
    (docs / "logging.md").write_text("# Logging\n\nFeedback lives in the log.\n")
    sync_paths(bot_index(config))
    changed = run_eval(eval_settings(config), ["plain", "prompt"], HELDOUT, limit=2, encode=None, write=False)
    assert (changed.run.generated, changed.run.reused) == (2, 2)  # only the RAG variant


def test_a_variant_that_answered_nothing_is_an_error_not_an_empty_report(eval_bot) -> None:
    result = eval_cli(eval_bot, "--variants", "plain,prompt", "--max-new-tokens", "1000000")
    assert result.exit_code == 1 and "could not answer 6 item(s)" in result.output
    assert result.output.rstrip().endswith(
        "error: plain, prompt answered none of the 6 items, so nothing was compared; the "
        "warning above says why")


def test_gate_exit_codes(eval_bot: Path) -> None:
    assert eval_cli(eval_bot, "--variants", "plain,prompt", "--gate", "token_f1>=-1"
                    ).exit_code == 0
    failed = eval_cli(eval_bot, "--variants", "plain,prompt", "--gate", "token_f1>=0.5")
    assert failed.exit_code == 3
    assert "gate token_f1>=0.5 failed: prompt - plain" in failed.output
    latency = eval_cli(eval_bot, "--variants", "plain,prompt", "--gate", "latency_ms<=-100000")
    assert latency.exit_code == 3 and "upper bound" in latency.output
    typo = eval_cli(eval_bot, "--variants", "plain,prompt", "--gate", "f1>0")
    assert typo.exit_code == 1 and "gate 'f1>0' is not METRIC>=NUMBER" in typo.output


def test_bad_inputs_are_one_line_errors(eval_bot: Path, tmp_path: Path) -> None:
    one = eval_cli(eval_bot, "--variants", "plain")
    assert one.exit_code == 1 and "two or more distinct names" in one.output
    unknown = eval_cli(eval_bot, "--variants", "plain,nope")
    assert unknown.exit_code == 1 and "unknown variant 'nope'" in unknown.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answers": ["a"]}\n{"text": "x"}\n')
    result = CliRunner().invoke(main, ["eval", "--config", str(eval_bot), "--data", str(bad),
                                       "--variants", "plain,prompt"])
    assert result.exit_code == 1 and "bad.jsonl, line 2: needs a \"question\"" in result.output
    bad.write_text('{"question": "q", "answers": ["a"]}\n{"question": " ", "answers": ["x"]}\n')
    result = CliRunner().invoke(main, ["eval", "--config", str(eval_bot), "--data", str(bad),
                                       "--variants", "plain,prompt"])
    assert result.exit_code == 1 and "bad.jsonl, line 2: the question is empty" in result.output
    bad.write_text("\n")
    result = CliRunner().invoke(main, ["eval", "--config", str(eval_bot), "--data", str(bad),
                                       "--variants", "plain,prompt"])
    assert result.stderr == (f"error: {bad} holds no evaluation items; give it one JSON "
                             'object a line, such as {"question": "...", "answers": ["..."]}\n')
    one = tmp_path / "one.jsonl"  # one conversation: all of it goes to training
    one.write_text(json.dumps({"messages": conversation("Who maintains Zorb?", "Ada Quill.")}))
    built = CliRunner().invoke(main, ["data", "build", "--config", str(eval_bot), "--name",
                                      "all-train", "--from", str(one)])
    assert built.exit_code == 0, built.output
    result = CliRunner().invoke(main, ["eval", "--config", str(eval_bot), "--data", "all-train",
                                       "--variants", "plain,prompt"])
    assert result.stderr == (
        "error: dataset 'all-train' has no validation conversations to ask; build it again with "
        "more conversations or a larger data.validation_share, or evaluate on a JSONL file of "
        "held-out questions instead\n")
    assert parse_gate("rouge_l >= 0.02").threshold == 0.02
    assert parse_gate("latency_ms<=1e3").threshold == 1000
    with pytest.raises(InputError, match="is not METRIC>=NUMBER"):
        parse_gate("token_f1>=0.0.1")  # was a ValueError traceback
    with pytest.raises(InputError, match="is not METRIC>=NUMBER"):
        parse_gate("token_f1>=1e999")  # infinite: a gate no candidate can pass, said "vs inf"
    for out in ("../../x", str(tmp_path / "elsewhere"), "team/v2"):  # a name, not a path
        escaped = eval_cli(eval_bot, "--variants", "plain,prompt", "--out", out)
        assert escaped.exit_code == 1
        assert f"error: eval name {out!r} is not allowed" in escaped.output
    assert not (tmp_path / "elsewhere").exists() and not list(tmp_path.parent.glob("x"))
    huge = eval_cli(eval_bot, "--variants", "plain,prompt", "--limit", "9" * 70)
    assert huge.exit_code == 1 and huge.output.endswith(
        f"error: --limit {'9' * 70} is more items than any data holds; leave --limit out to "
        "evaluate every item\n")
    for effect in ("-1", "0", "nan", "inf"):
        refused = eval_cli(eval_bot, "--variants", "plain,prompt", "--min-effect", effect)
        assert refused.exit_code == 2
        assert f"Invalid value for '--min-effect': {float(effect)} is not a positive" \
            in refused.output


def test_retrieval_variant_without_an_index_is_warned_about(tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"), "generation": {"max_new_tokens": 2},
        "models": {"chat": str(tiny_model_dir), "embedder": "hash:64"},
        "variants": {"plain": {"template": "plain", "retrieval": False}, "prompt": {}},
        "default_variant": "plain"}))
    result = run_eval(eval_settings(load_config(path)), ["plain", "prompt"], HELDOUT, limit=1, encode=None,
                      write=False)
    assert result.warnings == [f"no index in {tmp_path / 'data' / 'index'}: retrieval "
                               "variants answered without sources; run `chatbot index sync` "
                               "first"]


def test_an_item_a_variant_cannot_answer_is_left_out_of_its_scores_and_named(
        eval_bot: Path, tmp_path: Path) -> None:
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"question": "What is the refund window?", "answers": ["30 days"]})
                    + "\n" + json.dumps({"id": "huge", "question": "word " * 20_000,
                                         "answers": ["x"]}) + "\n")
    result = run_eval(eval_settings(load_config(eval_bot)), ["plain", "prompt"], str(data),
                      encode=None, write=False)
    assert [w.split(": ")[0] for w in result.warnings] == [
        "plain could not answer 1 item(s), left out of its scores; the first, huge",
        "prompt could not answer 1 item(s), left out of its scores; the first, huge"]
    assert result.summaries["plain"]["token_f1"][1] == 1  # scored on the answered item only
    assert result.comparisons["prompt"]["token_f1"].n == 1


def test_a_ctrl_c_python_dropped_still_stops_the_eval_before_the_next_question(
        eval_bot: Path) -> None:
    with a_dropped_ctrl_c(), pytest.raises(KeyboardInterrupt):
        run_eval(eval_settings(load_config(eval_bot)), ["plain", "prompt"], HELDOUT, encode=None,
                 write=False)
    cache = load_config(eval_bot).data_path / "evals" / "eval_heldout" / CACHE_FILE
    assert not cache.is_file() or cache.read_text() == ""


def test_ctrl_c_keeps_the_answers_and_says_the_same_command_continues(eval_bot: Path,
                                                                       tmp_path: Path) -> None:
    """A real SIGINT to an eval started in the background (SIGINT ignored, as `cmd &` does)."""
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"question": f"What is item {i}?", "answers": ["x"]}) + "\n"
                            for i in range(40)))
    run = started(["eval", "--config", str(eval_bot), "--data", str(many), "--variants",
                   "plain,prompt", "--max-new-tokens", "64"], in_background=True)
    cache = load_config(eval_bot).data_path / "evals" / "many" / CACHE_FILE
    stderr = ctrl_c_once(run, lambda: cache.is_file() and cache.read_text().count("\n") >= 2)
    assert stderr.splitlines()[-1] == ("error: interrupted; run the same command again to "
                                       "continue eval 'many': the answers generated so far "
                                       "are kept")
    kept = cache.read_text().count("\n")
    assert 2 <= kept < 80
    again = CliRunner().invoke(main, ["eval", "--config", str(eval_bot), "--data", str(many),
                                      "--variants", "plain,prompt", "--max-new-tokens", "64",
                                      "--json"])
    generation = json.loads(again.output[again.output.index("{"):])["generation"]
    assert generation["reused"] >= 2 and generation["reused"] + generation["generated"] == 80


def test_a_limit_trial_keeps_the_full_runs_results(eval_bot: Path) -> None:
    """A quick `--limit` look after a full run must not replace the full run's reports."""
    evals = load_config(eval_bot).data_path / "evals"
    full = eval_cli(eval_bot, "--variants", "plain,prompt", "--json")
    assert full.exit_code == 0, full.output
    before = (evals / "eval_heldout" / "metrics.json").read_text()
    trial = eval_cli(eval_bot, "--variants", "plain,prompt", "--limit", "2", "--json")
    assert trial.exit_code == 0, trial.output
    assert (evals / "eval_heldout" / "metrics.json").read_text() == before
    assert json.loads((evals / "eval_heldout-first2" / "metrics.json").read_text())["items"] == 2
    named = eval_cli(eval_bot, "--variants", "plain,prompt", "--limit", "2", "--out",
                     "eval_heldout")
    assert named.exit_code == 1
    assert ("error: eval 'eval_heldout' holds the results of 6 items; a --limit 2 run would "
            "replace them: give --out another name") in named.output
    assert (evals / "eval_heldout" / "metrics.json").read_text() == before


def test_duplicate_ids_are_refused_and_repeated_questions_warned_about(eval_bot: Path,
                                                                       tmp_path: Path) -> None:
    """Each item is one row of metrics.json's per_item and one pair in the statistics: two
    items under one id can't be told apart, and a question asked twice counts twice."""
    def row(item_id, question, answer):
        return json.dumps({"id": item_id, "question": question, "answers": [answer]}) + "\n"

    data = tmp_path / "dup.jsonl"
    data.write_text(row("a", "Where is feedback stored?", "logs")
                    + row("b", "How do I add documents?", "sync")
                    + row("a", "What is a variant?", "a named way"))
    refused = CliRunner().invoke(main, ["eval", "--config", str(eval_bot), "--data", str(data),
                                        "--variants", "plain,prompt"])
    assert refused.exit_code == 1
    assert (f"error: {data}: item id 'a' is given to 2 items; give each its own \"id\""
            in refused.output)
    assert not (load_config(eval_bot).data_path / "evals" / "dup").exists()
    data.write_text(row("a", "Where is feedback stored?", "logs")
                    + row("b", "How do I add documents?", "sync")
                    + row("c", "Where is feedback stored?", "in logs.sqlite"))
    result = run_eval(eval_settings(load_config(eval_bot)), ["plain", "prompt"], str(data),
                      encode=None, write=False)
    assert result.warnings == [
        "item c asks what item a asks (the same question after the same history), so that "
        "question counts twice in every mean and comparison; give one item all its "
        "reference answers, or remove the repeats"]


def test_a_rerun_replaces_each_report_whole(eval_bot: Path) -> None:
    """Whoever has a report open while a rerun writes the next (a browser loading
    report.html, a copy under way) reads the old report whole, never a mix of the two."""
    out = load_config(eval_bot).data_path / "evals" / "eval_heldout-first2"
    assert eval_cli(eval_bot, "--variants", "plain,prompt", "--limit", "2").exit_code == 0
    names = ["metrics.json", "report.md", "report.html", "intervals.png"]
    old = {name: (out / name).read_bytes() for name in names}
    readers = {name: (out / name).open("rb") for name in names}
    try:
        rerun = eval_cli(eval_bot, "--variants", "plain,prompt,prompt2", "--limit", "2")
        assert rerun.exit_code == 0, rerun.output
        for name in names:
            assert (out / name).read_bytes() != old[name], name
            assert readers[name].read() == old[name], name
    finally:
        for reader in readers.values():
            reader.close()
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, CACHE_FILE])


def test_a_misspelt_field_is_warned_about(eval_bot: Path, tmp_path: Path) -> None:
    data = tmp_path / "typo.jsonl"
    data.write_text(json.dumps({"question": "How do I index?", "answers": ["sync"],
                                "gold_id": ["indexing"]}) + "\n")
    result = CliRunner().invoke(main, ["eval", "--config", str(eval_bot), "--data", str(data),
                                       "--variants", "plain,prompt"])
    assert result.exit_code == 0, result.output
    assert f'warning: {data}, line 1: field "gold_id" is not read' in result.stderr


def test_a_full_run_reuses_the_answers_of_a_limited_trial_before_it(eval_bot: Path) -> None:
    """`--limit N` writes DATA-firstN beside the full run's DATA; the same variant, item and
    settings give the same greedy answer, so neither generates what the other has."""
    import shutil

    config = load_config(eval_bot)

    def run(**options):
        return run_eval(eval_settings(config), ["plain", "prompt"], HELDOUT, encode=None,
                        write=False, **options)

    assert run(limit=2).run.generated == 4
    full = run()
    assert (full.run.generated, full.run.reused) == (8, 4)
    shutil.rmtree(config.data_path / "evals" / "eval_heldout-first2")
    assert run().run.generated == 0  # the full run's own folder holds every answer it used
    assert (run(limit=3).run.generated, run(limit=3).run.reused) == (0, 6)
    longer = run(max_new_tokens=7)  # other settings: nothing is reused
    assert longer.run.generated == 12


def test_a_new_bot_name_is_a_new_prompt_so_answers_are_generated_again(eval_bot: Path) -> None:
    """The templates put the bot's name in the system prompt: an answer cached under the old
    name was reused for a prompt it was never given."""
    config = load_config(eval_bot)
    first = run_eval(eval_settings(config), ["plain", "prompt"], HELDOUT, limit=1, encode=None,
                     write=False)
    config.name = "Helpdesk"
    renamed = run_eval(eval_settings(config), ["plain", "prompt"], HELDOUT, limit=1, encode=None,
                       write=False)
    assert (first.run.generated, renamed.run.generated) == (2, 2)
