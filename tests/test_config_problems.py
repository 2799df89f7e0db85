"""`chatbot config check`'s problems: every one at once, each under its key path with what
to write (chatbot/config_problems.py), checks that compare keys included."""

import pytest

from chatbot.config_file import config_problems, load_config


def test_checks_across_keys_are_reported_beside_a_bad_value() -> None:
    """pydantic skips checks that compare keys while any key is invalid: all come at once."""
    assert config_problems({"default_variant": "finetuned", "retrieval": {"k": 0},
                            "ab": {"weights": {"prompt": 0.5, "finetuned": 0.5}}}) == [
        "retrieval.k: 0 is out of range; allowed: from 1 to 50",
        "default_variant: 'finetuned' is not one of the variants: prompt",
        "ab: unknown variant(s) finetuned named; variants: prompt"]


def test_every_check_across_keys_reports_its_problem() -> None:
    """One failing check across keys used to hide the next: all of them are named at once."""
    assert config_problems({"default_variant": "finetuned", "logging": {"enabled": False},
                            "ab": {"enabled": True, "weights": {"prompt": 1, "gone": 1},
                                   "arena_pairs": [["prompt", "prompt"]]}}) == [
        "default_variant: 'finetuned' is not one of the variants: prompt",
        "ab: unknown variant(s) gone named; variants: prompt",
        "ab.arena_pairs: a pair needs two different variants",
        "ab.enabled: needs logging.enabled, as the sticky assignments and the votes are kept "
        "in the log"]


def test_a_bad_mapping_value_does_not_hide_the_checks_across_keys() -> None:
    """ab.weights is a mapping but a key, not a section: its bad value is left out for them."""
    assert config_problems({"ab": {"enabled": True, "weights": {"prompt": 0}},
                            "logging": {"enabled": False}}) == [
        "ab.weights: weights must be from 0 to 1e+06 and at least one must be > 0",
        "ab.enabled: needs logging.enabled, as the sticky assignments and the votes are kept "
        "in the log"]


def test_a_missing_key_or_a_value_of_the_wrong_shape_says_what_to_write() -> None:
    """pydantic's "Field required" and "valid dictionary or instance of RetrievalConfig"
    named a class the user never wrote and no fix."""
    assert config_problems({"backends": {"gpu": {}}, "retrieval": [{"k": 3}],
                            "filters": {"blocklist": "word"}}) == [
        "retrieval: expected a mapping of keys, got a list; write its keys indented under it",
        "backends.gpu.base_url: missing; add it",
        "filters.blocklist: expected a list, got a string; write one '- item' a line, or [a, b]"]


def test_a_section_that_fails_as_a_whole_does_not_hide_the_checks_across_keys() -> None:
    """A backend without base_url, or a variant whose own settings clash, failed again in
    every later check, so an unknown default_variant or A/B arm went unsaid."""
    assert config_problems({"backends": {"gpu": {}},
                            "variants": {"prompt": {}, "r": {"backend": "gpu"}},
                            "default_variant": "x", "ab": {"weights": {"gone": 1}}}) == [
        "backends.gpu.base_url: missing; add it",
        "variants.r: backend 'gpu' needs model: the name the server serves (as its /v1/models "
        "lists it)",
        "default_variant: 'x' is not one of the variants: prompt, r",
        "ab: unknown variant(s) gone named; variants: prompt, r"]


def test_a_section_left_empty_takes_its_defaults_as_an_empty_file_does(tmp_path) -> None:
    """``retrieval:`` with nothing under it (its keys commented out) was an error, while an
    empty file was the defaults: an empty section is now that section's defaults, at any
    depth, a variant's or a backend list's included; a key written beside it still counts."""
    empty, sparse = tmp_path / "empty.yaml", tmp_path / "sparse.yaml"
    empty.write_text("")
    sparse.write_text("retrieval:\n#  k: 8\nmodels:\ntraining:\n  sweep:\nbackends:\n"
                      "variants:\n  prompt:\n  tuned:\nab:\n  weights:\n  alpha: 0.1\n")
    defaults, config = load_config(empty), load_config(sparse)
    for section in ("retrieval", "models", "training", "backends"):
        assert getattr(config, section) == getattr(defaults, section), section
    assert config.variants["tuned"] == config.variants["prompt"] == defaults.variants["prompt"]
    assert (config.ab.weights, config.ab.alpha) == ({}, 0.1)
    assert config_problems({"variants": None, "backends": None, "retrieval": {"k": 0}}) == [
        "retrieval.k: 0 is out of range; allowed: from 1 to 50"]


@pytest.mark.parametrize("raw, problem", [
    ({"retrieval": {"k": 0}}, "retrieval.k: 0 is out of range; allowed: from 1 to 50"),
    ({"variants": {"prompt": {"k": 51}}},
     "variants.prompt.k: 51 is out of range; allowed: from 1 to 50"),
    ({"ab": {"alpha": 0.7}}, "ab.alpha: 0.7 is out of range; allowed: above 0 and below 0.5"),
    ({"ab": {"bootstrap": 3}}, "ab.bootstrap: 3 is out of range; allowed: at least 50"),
    ({"generation": {"temperature": -1}},
     "generation.temperature: -1 is out of range; allowed: from 0 to 2"),
    ({"training": {"sweep": {"lora_r": [8, 0]}}},
     "training.sweep.lora_r.1: 0 is out of range; allowed: at least 1"),
])
def test_a_value_out_of_range_names_the_value_and_the_allowed_range(raw, problem) -> None:
    """pydantic said "Input should be less than 0.5": neither the value given nor the other
    end of the range the key allows."""
    assert config_problems(raw) == [problem]


def test_an_unknown_key_like_no_known_one_says_to_remove_it() -> None:
    assert config_problems({"retrieval": {"colour": "blue"}}) == [
        "retrieval.colour: unknown key (remove it or check its spelling)"]


@pytest.mark.parametrize("raw, problem", [
    ({"retrieval": {"k": "five"}}, "retrieval.k: expected a whole number, got 'five'"),
    ({"retrieval": {"k": 2.5}}, "retrieval.k: expected a whole number, got 2.5"),
    ({"generation": {"temperature": "hot"}},
     "generation.temperature: expected a number, got 'hot'"),
    ({"retrieval": {"fusion": {"dense_weight": float("inf")}}},
     "retrieval.fusion.dense_weight: expected a finite number, got inf"),
    ({"ab": {"enabled": "maybe"}}, "ab.enabled: expected true or false, got 'maybe'"),
    ({"models": {"chat": 3}}, "models.chat: expected text, got 3; put it in quotes"),
    ({"models": {"chat": True}}, "models.chat: expected text, got true; put it in quotes"),
    ({"models": {"chat": None}},
     "models.chat: expected text, got nothing (null); give a value or remove it"),
    ({"index": {"paths": [["docs"]]}}, "index.paths.0: expected text, got a list"),
    ({"models": {"embedder_dtype": "int8"}},
     "models.embedder_dtype: 'int8' is not one of 'auto', 'float32' or 'bfloat16'"),
])
def test_a_value_of_the_wrong_type_says_what_the_key_takes_and_what_it_got(raw, problem) -> None:
    """pydantic said "Input should be a valid integer, unable to parse string as an integer":
    not the value given, and in words of Python rather than of YAML."""
    assert config_problems(raw) == [problem]


@pytest.mark.parametrize("raw, problem", [
    ({"server": {"port": True}}, "server.port: expected a whole number, got true"),
    ({"generation": {"temperature": False}},
     "generation.temperature: expected a number, got false"),
    ({"retrieval": {"min_score": True}}, "retrieval.min_score: expected a number, got true"),
    ({"ab": {"weights": {"prompt": True}}}, "ab.weights.prompt: expected a number, got true"),
    ({"training": {"sweep": {"lora_r": [8, True]}}},
     "training.sweep.lora_r.1: expected a whole number, got true"),
])
def test_true_or_false_is_no_number(raw, problem) -> None:
    """``server.port: true`` (or yes) was read as port 1: pydantic takes a bool as an int."""
    assert config_problems(raw) == [problem]


def test_true_or_false_in_a_yaml_file_is_no_port(tmp_path) -> None:
    from chatbot.errors import ConfigError

    path = tmp_path / "bot.yaml"
    path.write_text("server:\n  port: yes\n")
    with pytest.raises(ConfigError, match="server.port: expected a whole number, got true"):
        load_config(path)
