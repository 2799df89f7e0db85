from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from app.cli import main
from chatbot.config import BotConfig, config_problems, load_config
from chatbot.errors import ConfigError

SHIPPED = sorted(Path(__file__).parents[1].glob("configs/*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
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
        "models.chat: Input should be a valid string",
        "models.devise: unknown key (remove it or check its spelling)",
        "index: chunk_overlap must be smaller than chunk_tokens",
        "variants.prompt.k: Input should be greater than or equal to 1",
        "modles: unknown key (remove it or check its spelling)",
    ]


def test_default_variant_must_exist() -> None:
    assert config_problems({"default_variant": "nope"}) == [
        "(top level): default_variant 'nope' is not one of the variants: prompt"]


def test_paths_resolve_from_the_config_folder_and_env_wins(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOT_DATA_DIR")
    (tmp_path / "bots").mkdir()
    path = tmp_path / "bots" / "a.yaml"
    path.write_text("data_dir: ../state\n")
    assert load_config(path).data_path == tmp_path / "state"
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path / "elsewhere"))
    assert load_config(path).data_path == tmp_path / "elsewhere"


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; pass --config PATH"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrieval: {k: 0}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: 1 problem\(s\):\n  retrieval.k"):
        load_config(bad)


def test_config_check_command(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", str(SHIPPED[0])])
    assert ok.exit_code == 0 and ok.output.strip().endswith(": ok")
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 0, hots: x}\n")
    result = runner.invoke(main, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "server.port: Input should be greater than or equal to 1" in result.output
    assert "server.hots: unknown key" in result.output
