"""The ``refluxo`` command."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from refluxo.demo import run_demo


@click.group()
@click.version_option(package_name="refluxo")
def main() -> None:
    """Refluxo: a stateless, snapshot-based, step-by-step workflow engine."""


@main.command()
def demo() -> None:
    """Run the example order workflow end to end and print every step."""

    def show(line: str, **style: Any) -> None:
        click.secho(line, **style)

    final = asyncio.run(run_demo(show))
    show("")
    show("Final snapshot (wire form):", bold=True)
    show(json.dumps(final.model_dump(mode="json"), indent=2))
