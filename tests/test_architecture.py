"""The package layers hold: index <- chatbot <- training <- app, each importing only those
below it (function-level imports included), as pyproject.toml's import-linter contract says."""

import subprocess
import sys
from pathlib import Path


def test_packages_import_only_the_layers_below_them() -> None:
    # its own process: import-linter reconfigures logging, which would silence other tests' logs
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter), "--config", "pyproject.toml", "--no-cache"],
                            capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_app_reads_the_bot_config() -> None:
    """``app.build`` turns the config into flat records; below it nothing takes ``BotConfig``
    (``chatbot/config.py`` defines it, ``chatbot/config_file.py`` reads it from YAML and
    ``chatbot/config_problems.py`` words its problems)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    below = [p for package in ("index", "chatbot", "training")
             for p in sorted((root / package).rglob("*.py"))
             if p.relative_to(root).as_posix() not in ("chatbot/config.py",
                                                       "chatbot/config_file.py",
                                                       "chatbot/config_problems.py")]
    assert [str(p.relative_to(root)) for p in below
            if "BotConfig" in p.read_text(encoding="utf-8")] == []


def test_every_module_the_architecture_guide_names_exists() -> None:
    import re
    from pathlib import Path

    root = Path(__file__).parents[1]
    guide = (root / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:app|chatbot|index|training)/[\w/]*\w\.py)\b", guide))
    folders = {"app", "chatbot", "index", "training"}
    short = {name for name in re.findall(r"`(\w+\.py)`", guide)}
    assert len(named) > 20
    assert [path for path in sorted(named) if not (root / path).is_file()] == []
    assert [name for name in sorted(short)
            if not any((root / folder).rglob(name) for folder in folders)] == []
