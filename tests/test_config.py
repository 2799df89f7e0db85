import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from chatbot.config import BotConfig
from chatbot.config_file import config_problems, load_config

SHIPPED = sorted(Path(__file__).parents[1].glob("configs/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_REMOTE_URL", "http://localhost:8000/v1")
    monkeypatch.setenv("CHATBOT_REMOTE_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    assert config_problems(yaml.safe_load(path.read_text())) == []


def test_default_config_documents_every_key() -> None:
    """Every key of the schema appears in configs/default.yaml, so users can see them all."""
    text = (Path(__file__).parents[1] / "configs/default.yaml").read_text()
    raw = yaml.safe_load(text)
    for section, model in BotConfig.model_fields.items():
        if section == "base_dir":
            continue
        assert section in raw, f"{section} missing from default.yaml"
        sub = getattr(model.annotation, "model_fields", None)
        if sub:
            missing = set(sub) - set(raw[section])
            assert not missing, f"{section}: {missing} missing from default.yaml"


def test_all_problems_are_reported_at_once_with_key_paths() -> None:
    raw = {"modles": {}, "models": {"chat": 3, "devise": "cpu"},
           "index": {"chunk_tokens": 100, "chunk_overlap": 100},
           "variants": {"prompt": {"k": 0}}}
    assert config_problems(raw) == [
        "models.chat: expected text, got 3; put it in quotes",
        "models.devise: unknown key; did you mean device? (else remove it)",
        "index: chunk_overlap must be smaller than chunk_tokens",
        "variants.prompt.k: 0 is out of range; allowed: from 1 to 50",
        "modles: unknown key; did you mean models? (else remove it)",
    ]


def test_an_embedded_name_that_ships_no_model_is_named_before_any_load() -> None:
    raw = {"models": {"chat": "embedded:nope", "embedder": "embedded:smollm2-135m-instruct"}}
    assert config_problems(raw) == [
        "models.chat: 'embedded:nope' is not an embedded model; the embedded chat "
        "model is 'embedded:smollm2-135m-instruct' (or give a Hugging Face id or a local "
        "directory)",
        "models.embedder: 'embedded:smollm2-135m-instruct' is not an embedded "
        "model; the embedded embedder model is 'embedded:all-minilm-l6-v2' (or give a Hugging "
        "Face id or a local directory)"]


def test_a_min_score_no_cosine_can_reach_is_named() -> None:
    """A dense cosine is from -1 to 1: at 25 (a percentage) or NaN every passage was dropped
    and every answer went without documents, with no word of why."""
    for value in (25, float("nan")):
        assert config_problems({"retrieval": {"min_score": value}}) == [
            f"retrieval.min_score: {value} is out of range; allowed: from -1 to 1"]
    assert config_problems({"retrieval": {"min_score": -1}}) == []


def test_an_infinite_fusion_weight_is_named() -> None:
    """Every passage of that ranking scored inf: the order was lost, and --json said Infinity."""
    assert config_problems({"retrieval": {"fusion": {"dense_weight": float("inf")}}}) == [
        "retrieval.fusion.dense_weight: expected a finite number, got inf"]


def test_fusion_weighing_only_a_ranking_the_index_lacks_is_named() -> None:
    """Without sentence vectors, weights only on the best sentence scored every hybrid hit 0:
    the hits came in the order the chunks were indexed."""
    assert config_problems({"index": {"sentence_vectors": False}, "retrieval": {"fusion": {
        "dense_weight": 0, "bm25_weight": 0}}}) == [
        "retrieval.fusion: dense_weight and bm25_weight cannot both be 0 with "
        "index.sentence_vectors: false (sentence_weight has no ranking to weigh)"]
    assert config_problems({"retrieval": {"fusion": {"dense_weight": 0, "bm25_weight": 0}}}) == []


def test_an_empty_reranker_is_named() -> None:
    """"" (meant as off) loaded the config's own folder as a cross-encoder at the first search."""
    assert config_problems({"retrieval": {"rerank": {"model": " "}}}) == [
        "retrieval.rerank.model: empty; give a cross-encoder (a Hugging Face id or a local "
        "directory), or null to keep the search order"]


def test_an_empty_model_name_is_named() -> None:
    """"" loaded the config's own folder as the model, and an index took '' as its embedder."""
    assert config_problems({"models": {"chat": "", "embedder": " "}}) == [
        "models.chat: empty; give a Hugging Face id, a local directory or the embedded model "
        "'embedded:smollm2-135m-instruct'",
        "models.embedder: empty; give a Hugging Face id, a local directory or the embedded "
        "model 'embedded:all-minilm-l6-v2'"]


def test_an_empty_text_to_show_instead_of_an_answer_is_named() -> None:
    """A refusal, a withheld answer or a filtered one shown as nothing tells the user nothing."""
    problems = config_problems({"retrieval": {"refusal": ""},
                                "attribution": {"withheld_message": " "},
                                "filters": {"replacement": "\n"}})
    assert problems == [f"{key}: empty; give the text the user sees instead of the answer"
                        for key in ("retrieval.refusal", "filters.replacement",
                                    "attribution.withheld_message")]


def test_default_variant_must_exist() -> None:
    assert config_problems({"default_variant": "nope"}) == [
        "default_variant: 'nope' is not one of the variants: prompt"]


def test_paths_resolve_from_the_config_folder_and_env_wins(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOT_DATA_DIR")
    (tmp_path / "bots").mkdir()
    path = tmp_path / "bots" / "a.yaml"
    path.write_text("data_dir: ../state\n")
    assert load_config(path).data_path == tmp_path / "state"
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert load_config(path).data_path == tmp_path / "elsewhere"


def test_a_relative_data_dir_from_the_environment_is_from_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bots").mkdir()
    path = tmp_path / "bots" / "a.yaml"
    path.write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBOT_DATA_DIR", "state")
    assert load_config(path).data_path == tmp_path / "state"


def test_config_check_from_another_folder_says_where_it_looked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 1 and (f"configs/default.yaml not found in the current folder "
                                      f"({tmp_path}); run the command from the project's folder"
                                      ) in result.output


def test_config_check_says_in_one_line_what_is_wrong_with_the_file_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "torn.yaml").write_text("models: [\n")
    (tmp_path / "a.yaml").write_text("{}\n")
    (tmp_path / "configs").mkdir()
    expected = {("torn.yaml",): "error: torn.yaml: not valid YAML: line 2, column 1: while "
                                "parsing a flow node; expected the node content, but found "
                                "'<stream end>'",
                ("configs",): "error: configs is a folder; give the config's YAML file",
                ("missing.yaml",): "error: config file missing.yaml not found in the current "
                                   f"folder ({tmp_path}); check the path",
                ("a.yaml", "--config", "torn.yaml"): "error: two configs given (a.yaml and "
                                                     "--config torn.yaml); check one at a time"}
    for arguments, message in expected.items():
        result = CliRunner().invoke(main, ["config", "check", *arguments])
        assert result.exit_code == 1 and result.output == message + "\n", arguments


def test_config_check_command(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", str(SHIPPED[0])])
    assert ok.exit_code == 0 and ok.output.strip().endswith(": ok")
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 0, hots: x}\n")
    result = runner.invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "server.port: 0 is out of range; allowed: from 1 to 65535" in result.output
    assert "server.hots: unknown key" in result.output


def test_config_check_finds_model_paths_that_name_no_folder_and_a_window_with_no_room(
        tmp_path: Path) -> None:
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer_config.json").write_text("{}")  # a tokenizer's folder
    bad = tmp_path / "bot.yaml"
    bad.write_text("backends: {gpu: {base_url: 'http://gpu:8000/v1'}}\n"
                   "variants:\n"
                   "  prompt: {backend: gpu, model: m, tokenizer: ./tokenizer}\n"
                   "  here: {model: ./models/tuned}\n"
                   "  fine: {backend: gpu, model: n, tokenizer: ./tok}\n"
                   "  tuned: {adapter: adapters/nothere, template: prompts/mine.j2}\n"
                   "  typo: {template: rga}\n"
                   "server: {auth_file: users.txt}\n")
    result = CliRunner().invoke(main, ["config", "check", str(bad), "--offline"])  # no gpu here
    assert result.exit_code == 1
    problems = [line.split(": ", 1)[1] for line in result.output.splitlines()]
    assert [problem.split(":")[0] for problem in problems] == [
        "variants.tuned.adapter", "variants.prompt.tokenizer", "variants.here.model",
        "variants.tuned.template", "variants.typo.template", "server.auth_file"]
    assert f"model directory {tmp_path / 'tokenizer'} does not exist" in problems[1]
    assert config_problems({"backends": {"gpu": {"base_url": "http://gpu:8000/v1"}},
                            "generation": {"max_new_tokens": 512},
                            "variants": {"prompt": {"backend": "gpu", "model": "m",
                                                    "context_window": 512}}}) == [
        "variants.prompt.context_window: 512 leaves no room for a prompt beside "
        "generation.max_new_tokens (512); set it to the served model's window, or lower "
        "max_new_tokens"]


def test_backend_problems_are_reported_at_once_with_key_paths() -> None:
    raw = {"backends": {"gpu": {"base_url": "gpu-box:8000", "timeout": 5}},
           "variants": {"prompt": {"backend": "gpux", "model": "m"},
                        "tuned": {"backend": "gpu", "model": "m", "adapter": "adapters/a"},
                        "local": {"tokenizer": "Qwen/Qwen2.5-7B-Instruct"},
                        "nameless": {"backend": "gpu"}}}
    assert config_problems(raw) == [
        "backends.gpu.base_url: 'gpu-box:8000' is not an http:// or https:// URL; expected one "
        "such as http://localhost:8000/v1",
        "backends.gpu.timeout: unknown key; did you mean timeout_s? (else remove it)",
        "variants.prompt.backend: backend 'gpux' is not declared under backends (declared: gpu)",
        "variants.tuned: backend 'gpu' and adapter are both set; a remote backend can't load a "
        "local adapter: remove one of them",
        "variants.local: tokenizer: only for a variant with a backend; remove it or set backend",
        "variants.nameless: backend 'gpu' needs model: the name the server serves (as its "
        "/v1/models lists it)",
    ]


def test_a_variant_points_at_a_backend_and_the_default_stays_in_process() -> None:
    config = BotConfig.model_validate({
        "backends": {"gpu": {"base_url": "http://gpu-box:8000/v1/", "api_key_env": "GPU_KEY",
                             "timeout_s": 120, "max_concurrency": 64}},
        "variants": {"prompt": {"backend": "gpu", "model": "Qwen/Qwen2.5-7B-Instruct"},
                     "here": {}}})
    assert config.backends["gpu"].base_url == "http://gpu-box:8000/v1"
    assert config.variants["prompt"].backend == "gpu"
    assert config.variants["here"].backend is None and BotConfig().backends == {}


def test_environment_variables_fill_a_config_and_a_missing_one_names_its_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bot.yaml"
    path.write_text("backends:\n  gpu: {base_url: '${GPU_URL}', timeout_s: '${GPU_TIMEOUT:-30}'}\n"
                    "variants:\n  prompt: {backend: gpu, model: '${GPU_MODEL}'}\n")
    monkeypatch.delenv("GPU_URL", raising=False)
    monkeypatch.delenv("GPU_MODEL", raising=False)
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}: backends.gpu.base_url: environment variable $GPU_URL is not set (set it, or "
        "write ${GPU_URL:-default} in the config)",
        f"{path}: variants.prompt.model: environment variable $GPU_MODEL is not set (set it, or "
        "write ${GPU_MODEL:-default} in the config)"]
    monkeypatch.setenv("GPU_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("GPU_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    config = load_config(path)
    assert config.backends["gpu"].base_url == "http://gpu-box:8000/v1"
    assert config.backends["gpu"].timeout_s == 30
    assert config.variants["prompt"].model == "Qwen/Qwen2.5-7B-Instruct"


def test_remote_config_is_the_default_bot_generated_by_the_remote_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_REMOTE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("CHATBOT_REMOTE_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    configs = Path(__file__).parents[1] / "configs"
    default = load_config(configs / "default.yaml").model_dump()
    remote = load_config(configs / "remote.yaml").model_dump()
    assert remote["backends"]["remote"]["base_url"] == "http://gpu-box:8000/v1"
    assert remote["backends"]["remote"]["api_key_env"] == "CHATBOT_REMOTE_KEY"
    for name, variant in remote["variants"].items():
        assert variant.pop("backend") == "remote"
        assert variant.pop("model") == "Qwen/Qwen2.5-7B-Instruct"
        assert variant == {key: value for key, value in default["variants"][name].items()
                           if key not in ("backend", "model")}
    assert remote.keys() == default.keys()
    assert {k: v for k, v in remote.items() if k not in ("backends", "variants")} == {
        k: v for k, v in default.items() if k not in ("backends", "variants")}


def test_every_backend_and_variant_key_is_documented() -> None:
    from chatbot.config import BackendConfig, VariantConfig

    docs = (Path(__file__).parents[1] / "docs/configuration.md").read_text()
    text = (Path(__file__).parents[1] / "configs/default.yaml").read_text()
    for section, model in (("backends", BackendConfig), ("variants", VariantConfig)):
        for key in model.model_fields:
            assert f"`{section}.NAME.{key}`" in docs, f"{section}.NAME.{key} not in the docs"
            assert f" {key}: " in text, f"{key} not commented in default.yaml"


def test_every_default_in_the_configuration_reference_is_the_codes() -> None:
    """docs/configuration.md's "Default" column, row by row, against ``BotConfig()``."""
    docs = (Path(__file__).parents[1] / "docs/configuration.md").read_text()
    rows = re.findall(r"^\| `([a-z_.]+)` \| `([^`]*)` \|", docs, re.M)
    assert len(rows) > 100
    defaults = BotConfig().model_dump(mode="json")
    for key, documented in rows:
        value = defaults
        for part in key.split("."):
            value = value[part]
        if documented.endswith("..."):  # a long message, shortened in the table
            assert value.startswith(documented[:-3]), key
        else:
            assert yaml.safe_load(documented) == value, key


def test_the_embedder_precision_reaches_the_embedder_and_a_wrong_one_is_named() -> None:
    from app.build import embedder_spec
    from chatbot.indexing import open_embedder

    config = BotConfig(models={"embedder_dtype": "bfloat16"})
    assert open_embedder(embedder_spec(config)).dtype == "bfloat16"
    assert open_embedder(embedder_spec(BotConfig())).dtype == "auto"
    assert config_problems({"models": {"embedder_dtype": "int8"}}) == [
        "models.embedder_dtype: 'int8' is not one of 'auto', 'float32' or 'bfloat16'"]


def test_a_variants_own_template_file_is_found_from_the_config_folder_wherever_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, echo) -> None:
    """Served and built into datasets alike from the config's folder, not the current one."""
    from app.build import build_variants
    from chatbot.engine import Engine

    (tmp_path / "bot" / "prompts").mkdir(parents=True)
    (tmp_path / "bot" / "prompts" / "mine.j2").write_text(
        "{% block system %}Be brief.{% endblock %}"
        "{% block user %}Q: {{ question }}{% endblock %}")
    path = tmp_path / "bot" / "bot.yaml"
    path.write_text("variants: {prompt: {template: prompts/mine.j2, retrieval: false}}\n")
    monkeypatch.chdir(tmp_path)
    engine = Engine(build_variants(load_config(path)), lambda model: echo)
    reply = engine.answer("s", "hello there", "prompt").result()
    assert [m.content for m in reply.messages] == ["Be brief.", "Q: hello there"]


def test_config_check_reads_the_auth_file_as_serve_does(tmp_path: Path) -> None:
    (tmp_path / "users.txt").write_text("ana:pw\nnocolon\n")
    path = tmp_path / "bot.yaml"
    path.write_text("server: {auth_file: users.txt}\n")
    problem = f"{tmp_path / 'users.txt'}:2: expected user:password"
    check = CliRunner().invoke(main, ["config", "check", str(path)])
    assert check.exit_code == 1 and check.output == f"{path}: server.auth_file: {problem}\n"
    serve = CliRunner().invoke(main, ["serve", "--config", str(path)])
    assert serve.exit_code == 1 and serve.output == f"error: {problem}\n"
