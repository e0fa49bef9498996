"""The README's two-file tutorial, as the tests read it: its files and its commands."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
TEMPLATE = ROOT / "examples" / "template"

SECTION = "## Your own workflow, in two files"
INSPECT = "## Inspect it in the browser"


@dataclass(frozen=True)
class Tutorial:
    files: dict[str, str]
    """Each file the tutorial writes, by name, as the README shows it."""
    commands: list[str]
    """The shell lines the tutorial runs, in order (comments dropped)."""
    serve: str
    """The command that serves the inspector."""


def _section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    following = text.find("\n## ", start + len(heading))
    return text[start : following if following != -1 else len(text)]


def _commands(block: str) -> list[str]:
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def read_tutorial(readme: Path = README) -> Tutorial:
    text = readme.read_text("utf-8")
    section = _section(text, SECTION)
    files = {
        match["name"]: match["body"]
        for match in re.finditer(
            r"`(?P<name>[\w.]+)`(?: \([^)]*\))?:\n\n```\w+\n(?P<body>.*?)```", section, re.S
        )
    }
    (shell,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    (serve,) = re.findall(r"```sh\n(.*?)```", _section(text, INSPECT), re.S)
    (serve_command,) = _commands(serve)
    return Tutorial(files, _commands(shell), serve_command)


def write_files(tutorial: Tutorial, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in tutorial.files.items():
        (folder / name).write_text(body, "utf-8")


def environment_of(commands: list[str]) -> dict[str, str]:
    """The variables the tutorial's ``export`` lines set."""
    found: dict[str, str] = {}
    for line in commands:
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = value
    return found
