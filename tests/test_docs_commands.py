"""Every ``camix ...`` command line in README.md and docs/ names config files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "synthcity" / "NOTEBOOK.md"]
# ``camix <command> ...``; not prose ("camix trains ...") nor a quoted message such as ``camix train: error: ...``
VERBS = "demo|train|evaluate|predict|report|export|study|data"
COMMAND = re.compile(rf"(?:^|[`\s(])((?:torchrun [^`]*?-m )?camix (?:--debug )?(?:{VERBS})(?![\w:-])[^`\n]*)")
CONFIG = re.compile(r"[\w./-]+\.ya?ml\b")


def command_lines(text: str) -> list[str]:
    """The ``camix ...`` commands of a markdown text: in code blocks (joined over ``\\`` continuations) and in inline
    code spans."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [match.group(1).strip() for match in COMMAND.finditer(joined)]


def named_configs(command: str) -> list[str]:
    """The YAML files a command line names."""
    return CONFIG.findall(command)


def test_the_parsers_on_a_made_up_page() -> None:
    page = (
        "Run `camix train -c configs/synthcity/camix.yaml --set a=1` or\n"
        "```bash\ncamix study configs/synthcity/study.yaml \\\n    --set x=configs/a.yml\n"
        "torchrun --nproc_per_node=4 -m camix train -c configs/gta2cs/camix.yaml\n```\n"
        "The file `configs/other.yaml` is no command, nor `camix train: error: config file x.yaml not found`,\n"
        "nor camix trains on a.yaml."
    )
    commands = command_lines(page)
    assert [named_configs(c) for c in commands] == [
        ["configs/synthcity/camix.yaml"],
        ["configs/synthcity/study.yaml", "configs/a.yml"],
        ["configs/gta2cs/camix.yaml"],
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_a_documented_command_names_exists(page: Path) -> None:
    missing = [
        f"{config} (in: {command})"
        for command in command_lines(page.read_text(encoding="utf-8"))
        for config in named_configs(command)
        if not (ROOT / config).is_file()
    ]
    assert missing == []


def test_the_readme_has_commands_with_configs() -> None:
    commands = command_lines((ROOT / "README.md").read_text(encoding="utf-8"))
    assert sum(bool(named_configs(c)) for c in commands) >= 8
