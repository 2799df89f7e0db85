"""`chatbot config check`'s problems: every one at once, each under its key path with what
to write (chatbot/config_problems.py), checks that compare keys included."""

from chatbot.config_file import config_problems


def test_checks_across_keys_are_reported_beside_a_bad_value() -> None:
    """pydantic skips checks that compare keys while any key is invalid: all come at once."""
    assert config_problems({"default_variant": "finetuned", "retrieval": {"k": 0},
                            "ab": {"weights": {"prompt": 0.5, "finetuned": 0.5}}}) == [
        "retrieval.k: Input should be greater than or equal to 1",
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
    assert config_problems({"backends": {"gpu": {}}, "retrieval": [{"k": 3}], "models": None,
                            "filters": {"blocklist": "word"}}) == [
        "models: expected a mapping of keys, got nothing (null); write its keys indented "
        "under it, or remove it",
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


def test_a_variant_written_without_settings_is_named_once() -> None:
    """``prompt:`` with nothing under it was left out for the checks across keys, which then
    also said default_variant 'prompt' is not one of the variants."""
    assert config_problems({"variants": {"prompt": None, "tuned": {}}}) == [
        "variants.prompt: expected a mapping of keys, got nothing (null); write its keys "
        "indented under it, or remove it"]


def test_an_unknown_key_like_no_known_one_says_to_remove_it() -> None:
    assert config_problems({"retrieval": {"colour": "blue"}}) == [
        "retrieval.colour: unknown key (remove it or check its spelling)"]
