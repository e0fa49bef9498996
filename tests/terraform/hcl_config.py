"""The ``terraform/`` module as python-hcl2 sees it, with helpers to read it in tests."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
SCHEMA_PATH = TERRAFORM_DIR / "provider-schema.google.json"

OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)

_LOCAL_ONLY = re.compile(r"^\$\{local\.(?P<name>[A-Za-z0-9_]+)\}$")
_LOCAL_INSIDE = re.compile(r"\$\{local\.(?P<name>[A-Za-z0-9_]+)\}")


@dataclass
class TerraformConfig:
    """Resources, data sources, ephemeral resources, variables, outputs and locals of one
    module."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ephemeral: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path = TERRAFORM_DIR) -> TerraformConfig:
        config = cls()
        for path in sorted(directory.glob("*.tf")):
            with path.open(encoding="utf-8") as handle:
                document = hcl2.load(handle, serialization_options=OPTIONS)
            config.files[path.name] = document
            for kind, target in (
                ("resource", config.resources),
                ("data", config.data),
                ("ephemeral", config.ephemeral),
            ):
                for entry in document.get(kind, []):
                    for type_name, instances in entry.items():
                        for name, body in instances.items():
                            existing = target.setdefault(type_name, {})
                            assert name not in existing, f"duplicate {type_name}.{name}"
                            existing[name] = body
            for entry in document.get("variable", []):
                config.variables.update(entry)
            for entry in document.get("output", []):
                config.outputs.update(entry)
            for entry in document.get("locals", []):
                for name, value in entry.items():
                    assert name not in config.locals, f"local.{name} declared twice"
                    config.locals[name] = value
            for entry in document.get("provider", []):
                config.providers.update(entry)
            config.terraform.extend(document.get("terraform", []))
        return config

    def resource(self, type_name: str, name: str) -> dict[str, Any]:
        instances = self.resources.get(type_name, {})
        assert name in instances, f"{type_name}.{name} is not declared ({sorted(instances)})"
        return instances[name]

    def resolve(self, value: Any) -> Any:
        """Replace ``${local.x}`` (whole value, or inside a string) by the local's value."""
        if isinstance(value, str):
            if whole := _LOCAL_ONLY.match(value):
                return self.resolve(self.locals[whole.group("name")])
            return _LOCAL_INSIDE.sub(lambda m: str(self.resolve(self.locals[m["name"]])), value)
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        return value

    def iter_resources(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for type_name, instances in sorted(self.resources.items()):
            for name, body in sorted(instances.items()):
                yield type_name, name, body


def single(body: Mapping[str, Any], block: str) -> dict[str, Any]:
    """The one nested ``block`` of a body (python-hcl2 gives blocks as lists)."""
    value = body.get(block)
    assert isinstance(value, list), f"no {block} block in {sorted(body)}"
    assert len(value) == 1, f"expected one {block} block, got {len(value)}"
    item = value[0]
    assert isinstance(item, dict)
    return item


def interpolations(value: Any) -> Iterator[str]:
    """Every ``${...}`` expression in a parsed value, nested ones included."""
    if isinstance(value, str):
        index = 0
        while (start := value.find("${", index)) >= 0:
            depth, cursor = 0, start + 1
            while cursor < len(value):
                if value[cursor] == "{":
                    depth += 1
                elif value[cursor] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                cursor += 1
            yield value[start + 2 : cursor]
            index = start + 2
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from interpolations(key)
            yield from interpolations(item)
    elif isinstance(value, list):
        for item in value:
            yield from interpolations(item)
