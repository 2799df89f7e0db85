"""Online A/B: sticky assignment, arena votes in SQLite (restart, duplicates), the report, the
``ab`` config section and ``chatbot ab report``."""

import json
import random
import sqlite3
from collections import Counter

import pytest
import yaml
from click.testing import CliRunner

from chatbot.ab import AbStore, arena_pairs, assign_variant, draw_pair
from chatbot.ab_report import build_report, chart_png, render_markdown
from app.cli import main
from chatbot.config_file import config_problems
from chatbot.errors import InputError
from chatbot.logs import ConversationLog
from chatbot.migrations import m001_initial, migrate
from log_support import log_with_a_session


def test_assignment_is_sticky_and_follows_the_weights() -> None:
    weights = {"prompt": 0.7, "finetuned": 0.3, "off": 0.0}
    shares = Counter(assign_variant(f"web-{i}", weights) for i in range(20_000))
    assert shares["prompt"] / 20_000 == pytest.approx(0.7, abs=0.015)
    assert shares["off"] == 0
    assert all(assign_variant("web-42", weights) == assign_variant("web-42", weights)
               for _ in range(3))
    with pytest.raises(InputError, match="weights are empty or all zero"):
        assign_variant("s", {"a": 0.0})


def test_assignments_survive_a_restart_and_a_change_of_shares(tmp_path) -> None:
    path = tmp_path / "logs.sqlite"
    store = AbStore(path)
    first = {f"s{i}": store.sticky_variant(f"s{i}", {"prompt": 1.0, "finetuned": 1.0})
             for i in range(40)}
    assert set(first.values()) == {"prompt", "finetuned"}
    store.close()
    reopened = AbStore(path)
    shares = {"prompt": 0.9, "finetuned": 0.1}
    assert all(reopened.sticky_variant(s, shares) == v for s, v in first.items())
    assert sum(reopened.assignments().values()) == 40
    # A variant taken out of the test (weight 0) hands its sessions to the others.
    assert {reopened.sticky_variant(s, {"prompt": 1.0, "finetuned": 0.0}) for s in first} == {
        "prompt"}


def test_arena_vote_once_per_voter_and_battle_and_kept_after_restart(tmp_path) -> None:
    path = tmp_path / "logs.sqlite"
    store = AbStore(path)
    battle = store.start_battle("sess", "How do I sync?", "finetuned", "prompt")
    assert store.vote(battle.id, "alice", "a").variant_a == "finetuned"
    with pytest.raises(InputError, match=f"alice already voted on battle {battle.id}"):
        store.vote(battle.id, "alice", "b")
    store.vote(battle.id, "bob", "tie")
    with pytest.raises(InputError, match="vote 'maybe' is not one of a, b, tie, both_bad"):
        store.vote(battle.id, "carol", "maybe")
    with pytest.raises(InputError, match="no arena battle 999"):
        store.vote(999, "carol", "a")
    store.close()
    assert [(v.variant_a, v.choice) for v in AbStore(path).votes()] == [
        ("finetuned", "a"), ("finetuned", "tie")]
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute("INSERT INTO votes (battle_id, voter, choice, created_at) "
                    "VALUES (?, 'alice', 'b', 'now')", (battle.id,))


def test_a_database_at_the_first_schema_gains_the_ab_tables(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "old.sqlite")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    m001_initial(db)
    db.execute("INSERT INTO _migrations VALUES ('m001_initial', 'then')")
    db.commit()
    assert migrate(db)[:2] == ["m002_ab", "m003_turn_writer"]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"assignments", "battles", "votes"} <= tables


def test_pairs_are_drawn_in_both_orders() -> None:
    assert arena_pairs(["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert arena_pairs(["a", "b", "c"], [["c", "a"]]) == [("c", "a")]
    rng = random.Random(0)
    orders = Counter(draw_pair([("a", "b")], rng) for _ in range(200))
    assert set(orders) == {("a", "b"), ("b", "a")} and min(orders.values()) > 70


def test_report_counts_thumbs_votes_and_needed_votes(tmp_path) -> None:
    path = tmp_path / "logs.sqlite"
    log, store = ConversationLog(path), AbStore(path)
    weights = {"prompt": 1.0, "finetuned": 1.0}
    sessions = iter(f"s{i}" for i in range(100))
    for variant, rating in [("prompt", 1), ("prompt", -1), ("finetuned", 1)]:
        session = next(s for s in sessions if store.sticky_variant(s, weights) == variant)
        log.ensure_session(session, variant)
        turn = log.add_turn(session, "assistant", "answer", variant=variant)
        log.add_feedback(turn, -rating)
        log.add_feedback(turn, rating)  # the latest rating counts
    log.ensure_session("dev", "finetuned")  # picked by hand, never split: not in the A/B rates
    log.add_feedback(log.add_turn("dev", "assistant", "answer", variant="finetuned"), -1)
    log.ensure_session("arena", "finetuned")
    arena_turn = log.add_turn("arena", "assistant", "arena answer", variant="finetuned")
    log.add_feedback(arena_turn, -1)
    battle = store.start_battle("arena", "q", "prompt", "finetuned")
    store.record_turns(battle.id, None, arena_turn)
    for voter, choice in [("u1", "b"), ("u2", "b"), ("u3", "a"), ("u4", "tie"), ("u5", "both_bad")]:
        store.vote(battle.id, voter, choice)
    report = build_report(store, ["prompt", "finetuned"], min_effect=0.1, n_boot=100)
    assert (report.thumbs["prompt"].successes, report.thumbs["prompt"].n) == (1, 2)
    assert (report.thumbs["finetuned"].successes, report.thumbs["finetuned"].n) == (1, 1)
    pair = report.pairs[0]
    assert (pair.a, pair.a_wins, pair.b_wins, pair.ties, pair.both_bad) == (
        "finetuned", 2, 1, 1, 1)
    assert pair.needed == 194 - 3  # decisive votes for 0.6 vs 0.5 at 80% power
    best = max(report.strengths, key=lambda s: s.strength)
    assert best.name == "finetuned" and best.low < best.strength < best.high
    text = render_markdown(report)
    assert "| finetuned vs prompt | 2 | 1 | 1 | 1 |" in text
    # 1/1 against 1/2 thumbs up: the difference with its interval, not a bare +50%
    assert "| finetuned vs prompt | +50.0% [-39.1%, +90.5%] | 1 (Fisher exact) |" in text
    assert "| variant | sessions the A/B split sent to it | thumbs up |" in text
    assert chart_png(report).startswith(b"\x89PNG")
    loose = render_markdown(build_report(store, ["prompt", "finetuned"], alpha=0.2, n_boot=100))
    assert "Wilson 80% intervals" in loose and "80% interval (the wider of the bootstrap" in loose


def test_the_report_says_both_bad_votes_count_as_ties_in_the_strengths(tmp_path) -> None:
    store = AbStore(tmp_path / "logs.sqlite")
    battle = store.start_battle("arena", "q", "prompt", "finetuned")
    for voter, choice in [("u1", "a"), ("u2", "both_bad")]:
        store.vote(battle.id, voter, choice)
    text = render_markdown(build_report(store, ["prompt", "finetuned"], n_boot=50))
    assert "Bradley-Terry log-strength (a tie or both-bad vote is half a win for each)" in text


def test_ab_config_names_must_be_variants() -> None:
    problems = config_problems({"ab": {"weights": {"prompt": 1, "nope": 1},
                                       "arena_pairs": [["prompt", "prompt"]]}})
    assert problems == ["ab: unknown variant(s) nope named; variants: prompt",
                        "ab.arena_pairs: a pair needs two different variants"]
    for weight in (-1, float("inf"), float("nan")):
        assert config_problems({"ab": {"weights": {"prompt": weight}}}) == [
            "ab.weights: weights must be from 0 to 1e+06 and at least one must be > 0"]
    assert config_problems({"ab": {"enabled": True}, "logging": {"enabled": False}}) == [
        "ab.enabled: needs logging.enabled, as the sticky assignments and the votes "
        "are kept in the log"]


def test_ab_report_command_prints_json_and_writes_a_chart(tmp_path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                      "variants": {"prompt": {}, "plain": {"template": "plain"}}},
                                     sort_keys=False))
    chart = tmp_path / "chart.png"
    command = ["ab", "report", "--config", str(config), "--json", "--chart", str(chart)]
    missing = CliRunner().invoke(main, command)  # a mistyped data_dir: nothing is created there
    assert missing.exit_code == 1 and "no conversation log at" in missing.output
    assert not (tmp_path / "data").exists() and not chart.exists()
    ConversationLog(tmp_path / "data" / "logs.sqlite").close()
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["variants"] == ["prompt", "plain"] and report["votes"] == 0
    # 0.5 -> 0.55 at 80% power: 2((z_a + z_b)/h)^2 rated answers per variant
    assert report["thumbs_tests"][0]["needed_per_variant"] == 1565
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert any(note.startswith("ab.enabled is false") for note in report["notes"])


def test_ab_report_chart_never_writes_over_the_bots_own_files(tmp_path) -> None:
    """--chart naming the log (or the config) is refused: the PNG would replace it."""
    config, log = tmp_path / "bot.yaml", tmp_path / "data" / "logs.sqlite"
    config.write_text(yaml.safe_dump({"data_dir": str(log.parent)}))
    before = config.read_bytes(), log_with_a_session(log, tmp_path / "link.png")
    refusals = {log: "is the bot's conversation log; choose another --chart path",
                tmp_path / "link.png": "is the bot's conversation log",
                config: "is the bot's config file; choose another --chart path",
                log / "chart.png": f"{log} is a file, not a folder",
                tmp_path / "chart.jpg": "the chart is a PNG image; give --chart a path ending "
                                        "in .png"}
    for chart, refusal in refusals.items():
        result = CliRunner().invoke(main, ["ab", "report", "--config", str(config), "--chart",
                                           str(chart)])
        assert result.exit_code == 1 and f"{chart}" in result.output, chart
        assert refusal in result.output and "Traceback" not in result.output, chart
    assert (config.read_bytes(), log.read_bytes()) == before
    assert [s["id"] for s in ConversationLog(log).sessions()] == ["web-a"]
    assert not (tmp_path / "chart.jpg").exists()


def test_ab_report_replaces_the_chart_whole(tmp_path) -> None:
    """The new chart takes the old one's place in one step: whoever has the old chart open (a
    page serving it, a copy under way) reads all of it, never the start of the new one, and a
    run cut short leaves the old one."""
    config = tmp_path / "bot.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                      "variants": {"prompt": {}, "plain": {"template": "plain"}}},
                                     sort_keys=False))
    chart = tmp_path / "chart.png"
    command = ["ab", "report", "--config", str(config), "--chart", str(chart)]
    store = AbStore(tmp_path / "data" / "logs.sqlite")
    assert CliRunner().invoke(main, command).exit_code == 0
    old = chart.read_bytes()
    with chart.open("rb") as reader:
        battle = store.start_battle("s1", "q", "prompt", "plain")
        store.vote(battle.id, "u1", "a")
        assert CliRunner().invoke(main, command).exit_code == 0
        assert chart.read_bytes() != old
        assert reader.read() == old
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".chart")]


def test_a_chart_panel_with_nothing_to_plot_says_so(tmp_path) -> None:
    """With no rated answers and no votes the chart was two blank panels with bare axes."""
    from chatbot.ab_report import chart_figure

    store = AbStore(tmp_path / "logs.sqlite")
    empty = chart_figure(build_report(store, ["prompt", "finetuned"], n_boot=10))
    assert [[t.get_text() for t in axes.texts] for axes in empty.axes] == [
        ["no rated answers in A/B sessions yet"], ["no arena votes yet"]]
    battle = store.start_battle("arena", "q", "prompt", "finetuned")
    store.vote(battle.id, "u1", "a")
    voted = chart_figure(build_report(store, ["prompt", "finetuned"], n_boot=10))
    assert [[t.get_text() for t in axes.texts] for axes in voted.axes] == [
        ["no rated answers in A/B sessions yet"], []]


def test_with_no_votes_the_report_shows_no_empty_arena_table(tmp_path) -> None:
    """The Dashboard drew the arena table's header with no rows under it."""
    text = render_markdown(build_report(AbStore(tmp_path / "logs.sqlite"), ["prompt", "plain"],
                                        n_boot=10))
    assert "Arena (0 votes)" in text and "| pair | wins |" not in text
    assert "no arena votes yet" in text
