"""The README's set-up commands are the ones CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.startswith("pip install torch==2.13.0") and "pytest" in ci_command
    assert ci_command in (ROOT / "README.md").read_text()


def test_readme_demo_command() -> None:
    assert "pip install torch==2.13.0 && pip install -e . && camix demo" in (ROOT / "README.md").read_text()
