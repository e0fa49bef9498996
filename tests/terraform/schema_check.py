"""An offline stand-in for ``terraform validate``.

``terraform validate`` needs the provider plugins, which cannot be downloaded on these
machines. This checks a configuration against the committed provider schema subset
(``terraform/provider-schema.google.json``, written by
``scripts/extract_provider_schema.py``) instead:

* every resource, data source, ephemeral resource and provider block is of a type the
  schema of its provider knows (the provider named by its ``provider`` meta-argument, or
  else by its type's prefix: ``provider = google-beta`` is checked against google-beta);
* every argument and nested block exists in the schema, is written as what it is (an
  argument ``x = ...`` or a block ``x { ... }``) and is not a read-only (computed) attribute;
* every required argument and every block with ``min_items`` is present, recursively, and
  no block appears more often than its ``max_items``;
* every reference inside ``${...}`` names a declared variable, local, resource, data
  source or ephemeral resource, and walks only attributes and blocks the schema has
  (``google_x.y.service_config[0].uri``).

It collects every problem, each with its address and argument path, instead of stopping
at the first one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
from hcl2 import SerializationOptions

Block = Mapping[str, Any]

_EXPLICIT = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=True, with_comments=False
)
_MARKERS = {"__is_block__", "__start_line__", "__end_line__"}

RESOURCE_META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
RESOURCE_META_BLOCKS = {"lifecycle", "provisioner", "connection"}
DATA_META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
DATA_META_BLOCKS = {"lifecycle"}
EPHEMERAL_META_ARGUMENTS = {"count", "for_each", "depends_on", "provider"}
EPHEMERAL_META_BLOCKS = {"lifecycle"}
PROVIDER_META_ARGUMENTS = {"alias", "version"}
# Names that are not references to declared objects.
_BUILTIN_ROOTS = {"each", "count", "path", "self", "terraform"}

_REFERENCE = re.compile(
    r"(?<![\w.\"])(?P<root>[A-Za-z_][A-Za-z0-9_-]*)"
    r"(?P<rest>(?:\[[^\[\]]*\]|\.[A-Za-z_*][A-Za-z0-9_-]*)*)"
)
_STEP = re.compile(r"\[[^\[\]]*\]|\.(?P<name>[A-Za-z_*][A-Za-z0-9_-]*)")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing ``terraform validate`` would reject."""

    address: str  # google_storage_bucket.source, data.archive_file.source, output.api_url
    path: str  # the argument / block path inside it, "" for the block itself
    message: str

    def __str__(self) -> str:
        where = f"{self.address}: {self.path}" if self.path else self.address
        return f"{where}: {self.message}"


@dataclass
class ProviderSchemas:
    """One provider's schemas: its configuration block and its types by kind."""

    provider: Block | None = None
    resources: dict[str, Block] = field(default_factory=dict)
    data_sources: dict[str, Block] = field(default_factory=dict)
    ephemeral_resources: dict[str, Block] = field(default_factory=dict)


@dataclass
class Schemas:
    """The provider schema subset, indexed the way configurations refer to it: by the
    provider's local name (the last part of its source address), then by type."""

    by_provider: dict[str, ProviderSchemas] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Schemas:
        document = json.loads(path.read_text(encoding="utf-8"))
        schemas = cls()
        for source, provider in document["provider_schemas"].items():
            entry = ProviderSchemas(
                provider=provider["provider"]["block"] if "provider" in provider else None,
                resources={n: e["block"] for n, e in provider["resource_schemas"].items()},
                data_sources={n: e["block"] for n, e in provider["data_source_schemas"].items()},
                ephemeral_resources={
                    n: e["block"] for n, e in provider.get("ephemeral_resource_schemas", {}).items()
                },
            )
            schemas.by_provider[source.rsplit("/", 1)[-1]] = entry
        return schemas

    @property
    def providers(self) -> dict[str, Block]:
        return {
            name: entry.provider
            for name, entry in self.by_provider.items()
            if entry.provider is not None
        }

    def lookup(self, kind: str, type_name: str, provider: str) -> Block | None:
        """The schema of a ``resource`` / ``data`` / ``ephemeral`` type of a provider."""
        entry = self.by_provider.get(provider)
        if entry is None:
            return None
        table = {
            "resource": entry.resources,
            "data": entry.data_sources,
            "ephemeral": entry.ephemeral_resources,
        }[kind]
        return table.get(type_name)


def provider_of(type_name: str, body: Mapping[str, Any]) -> str:
    """The local name of a block's provider: its ``provider`` meta-argument
    (``google-beta``, ``google-beta.alias``) or else its type's prefix."""
    value = body.get("provider")
    if isinstance(value, str):
        name = value.strip()
        if name.startswith("${") and name.endswith("}"):
            name = name[2:-1]
        return name.split(".", 1)[0].strip()
    return type_name.split("_", 1)[0]


def parse(text: str) -> dict[str, Any]:
    """HCL text as python-hcl2's dict, with blocks marked ``__is_block__``."""
    return hcl2.loads(text, serialization_options=_EXPLICIT)


def parse_directory(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every ``.tf`` file of a module (not of ``.terraform``), parsed, by file name."""
    documents = []
    for path in sorted(directory.glob("*.tf")):
        documents.append((path.name, parse(path.read_text(encoding="utf-8"))))
    return documents


def _is_block_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get("__is_block__") for item in value)
    )


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_computed_only(attribute: Block) -> bool:
    return bool(attribute.get("computed")) and not (
        attribute.get("optional") or attribute.get("required")
    )


def check_block(
    body: Mapping[str, Any],
    schema: Block,
    address: str,
    path: str = "",
    *,
    meta_arguments: Iterable[str] = (),
    meta_blocks: Iterable[str] = (),
) -> list[Problem]:
    """Problems of one block body against its schema block, recursively."""
    problems: list[Problem] = []
    attributes: Mapping[str, Block] = schema.get("attributes", {})
    block_types: Mapping[str, Block] = schema.get("block_types", {})
    meta_arguments = set(meta_arguments)
    meta_blocks = set(meta_blocks)
    counts: dict[str, int] = {}
    dynamic: set[str] = set()

    for name, value in body.items():
        if name in _MARKERS:
            continue
        where = _join(path, name)
        if name == "dynamic" and isinstance(value, list):
            # dynamic "label" { for_each = ..., content { ... } } parses as
            # [{"label": {"for_each": ..., "content": [{...}], "__is_block__": True}}]
            for item in value:
                for label, spec in item.items():
                    if label in _MARKERS:
                        continue
                    dynamic.add(label)
                    problems.extend(_check_dynamic(label, spec, block_types, address, path))
            continue
        if _is_block_list(value):
            if name in meta_blocks:
                continue
            if name in block_types:
                counts[name] = counts.get(name, 0) + len(value)
                nested = block_types[name]["block"]
                for index, item in enumerate(value):
                    problems.extend(check_block(item, nested, address, f"{where}[{index}]"))
            elif name in attributes:
                problems.append(
                    Problem(address, where, f"is an argument: write `{name} = ...`, not a block")
                )
            else:
                problems.append(Problem(address, where, "unsupported block type"))
            continue
        if name in meta_arguments:
            continue
        if name in attributes:
            if _is_computed_only(attributes[name]):
                problems.append(Problem(address, where, "read-only (computed) attribute"))
        elif name in block_types:
            problems.append(
                Problem(address, where, f"is a block: write `{name} {{ ... }}`, not an argument")
            )
        else:
            problems.append(Problem(address, where, "unsupported argument"))

    for name, attribute in sorted(attributes.items()):
        if attribute.get("required") and name not in body:
            problems.append(Problem(address, _join(path, name), "missing required argument"))
    for name, block_type in sorted(block_types.items()):
        count = counts.get(name, 0)
        minimum = int(block_type.get("min_items", 0))
        maximum = int(block_type.get("max_items", 0))
        if block_type.get("nesting_mode") == "single":
            maximum = 1
        if name in dynamic:
            continue
        if count < minimum:
            problems.append(
                Problem(address, _join(path, name), f"at least {minimum} block(s) required")
            )
        if maximum and count > maximum:
            problems.append(
                Problem(address, _join(path, name), f"at most {maximum} block(s), got {count}")
            )
    return problems


def _check_dynamic(
    label: str, spec: Mapping[str, Any], block_types: Mapping[str, Block], address: str, path: str
) -> list[Problem]:
    where = _join(path, f"dynamic.{label}")
    if label not in block_types:
        return [Problem(address, where, "unsupported block type")]
    content = spec.get("content")
    if not isinstance(content, list) or not _is_block_list(content) or len(content) != 1:
        return [Problem(address, where, "a dynamic block needs exactly one content block")]
    return check_block(content[0], block_types[label]["block"], address, f"{where}.content")


@dataclass
class _Declarations:
    variables: set[str] = field(default_factory=set)
    locals: set[str] = field(default_factory=set)
    # (type, name) -> the local name of the provider it is declared with
    resources: dict[tuple[str, str], str] = field(default_factory=dict)
    data: dict[tuple[str, str], str] = field(default_factory=dict)
    ephemeral: dict[tuple[str, str], str] = field(default_factory=dict)


def _labelled(document: Mapping[str, Any], kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for entry in document.get(kind, []):
        for type_name, instances in entry.items():
            if type_name in _MARKERS:
                continue
            for name, body in instances.items():
                if name not in _MARKERS:
                    yield type_name, name, body


def _declarations(documents: Iterable[Mapping[str, Any]]) -> _Declarations:
    declared = _Declarations()
    for document in documents:
        for entry in document.get("variable", []):
            declared.variables.update(k for k in entry if k not in _MARKERS)
        for entry in document.get("locals", []):
            declared.locals.update(k for k in entry if k not in _MARKERS)
        for type_name, name, body in _labelled(document, "resource"):
            declared.resources[(type_name, name)] = provider_of(type_name, body)
        for type_name, name, body in _labelled(document, "data"):
            declared.data[(type_name, name)] = provider_of(type_name, body)
        for type_name, name, body in _labelled(document, "ephemeral"):
            declared.ephemeral[(type_name, name)] = provider_of(type_name, body)
    return declared


def _interpolations(value: Any) -> Iterator[str]:
    """The expressions inside ``${...}`` of every string in a parsed value."""
    if isinstance(value, str):
        index = 0
        while (start := value.find("${", index)) >= 0:
            depth, cursor = 0, start + 1
            while cursor < len(value):
                char = value[cursor]
                if char == "{":
                    depth += 1
                elif char == "}":
                    depth -= 1
                    if depth == 0:
                        break
                cursor += 1
            yield value[start + 2 : cursor]
            index = cursor + 1
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _MARKERS:
                yield from _interpolations(key)
                yield from _interpolations(item)
    elif isinstance(value, list):
        for item in value:
            yield from _interpolations(item)


def _strip_string_literals(expression: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)


def _walk(schema: Block, steps: list[str | None]) -> str | None:
    """Follow attribute / block names through a schema; the first unknown name, if any."""
    current: Block | None = schema
    for step in steps:
        if step is None:  # an index: stays on the same block (or leaves an attribute)
            continue
        if current is None:  # inside an attribute value (map key, object field): stop
            return None
        if step in current.get("attributes", {}):
            current = None
        elif step in current.get("block_types", {}):
            current = current["block_types"][step]["block"]
        else:
            return step
    return None


def _check_reference(
    expression: str, declared: _Declarations, schemas: Schemas, address: str, path: str
) -> Iterator[Problem]:
    for match in _REFERENCE.finditer(_strip_string_literals(expression)):
        root = match.group("root")
        steps: list[str | None] = [m.group("name") for m in _STEP.finditer(match.group("rest"))]
        names = [s for s in steps if s is not None]
        if root in _BUILTIN_ROOTS:
            continue
        if root == "var":
            if names and names[0] not in declared.variables:
                yield Problem(address, path, f"reference to undeclared variable var.{names[0]}")
        elif root == "local":
            if names and names[0] not in declared.locals:
                yield Problem(
                    address, path, f"reference to undeclared local value local.{names[0]}"
                )
        elif root in ("data", "ephemeral"):
            if len(names) < 2:
                continue
            key = (names[0], names[1])
            table = declared.data if root == "data" else declared.ephemeral
            if key not in table:
                yield Problem(
                    address, path, f"reference to undeclared {root}.{names[0]}.{names[1]}"
                )
            elif (schema := schemas.lookup(root, names[0], table[key])) is not None:
                rest = steps[steps.index(names[1]) + 1 :]
                if (unknown := _walk(schema, rest)) is not None:
                    yield Problem(
                        address, path, f"{root}.{names[0]}.{names[1]} has no attribute {unknown!r}"
                    )
        elif "_" in root and names:
            provider = root.split("_", 1)[0]
            if provider not in schemas.providers:
                continue  # not a resource reference (a function or a for-expression symbol)
            key = (root, names[0])
            if key not in declared.resources:
                yield Problem(address, path, f"reference to undeclared resource {root}.{names[0]}")
            elif (schema := schemas.lookup("resource", root, declared.resources[key])) is not None:
                rest = steps[steps.index(names[0]) + 1 :]
                if (unknown := _walk(schema, rest)) is not None:
                    yield Problem(address, path, f"{root}.{names[0]} has no attribute {unknown!r}")


def _reference_problems(
    body: Any, declared: _Declarations, schemas: Schemas, address: str
) -> list[Problem]:
    problems: list[Problem] = []
    for expression in _interpolations(body):
        problems.extend(_check_reference(expression, declared, schemas, address, ""))
    return problems


def _unknown_type(what: str, provider: str, schemas: Schemas) -> str:
    if provider not in schemas.by_provider:
        return f"{what} of provider {provider!r}, which is not in the schema"
    if what == "data source":
        return "data source not in the provider schema"
    return f"{what} not in the provider schema"


def check_documents(documents: Iterable[Mapping[str, Any]], schemas: Schemas) -> list[Problem]:
    """Every problem of a module given as parsed documents (one per ``.tf`` file)."""
    documents = list(documents)
    declared = _declarations(documents)
    problems: list[Problem] = []
    kinds = (
        ("resource", "", "resource type", RESOURCE_META_ARGUMENTS, RESOURCE_META_BLOCKS),
        ("data", "data.", "data source", DATA_META_ARGUMENTS, DATA_META_BLOCKS),
        (
            "ephemeral",
            "ephemeral.",
            "ephemeral resource type",
            EPHEMERAL_META_ARGUMENTS,
            EPHEMERAL_META_BLOCKS,
        ),
    )
    for document in documents:
        for kind, prefix, what, meta_arguments, meta_blocks in kinds:
            for type_name, name, body in _labelled(document, kind):
                address = f"{prefix}{type_name}.{name}"
                provider = provider_of(type_name, body)
                schema = schemas.lookup(kind, type_name, provider)
                if schema is None:
                    problems.append(Problem(address, "", _unknown_type(what, provider, schemas)))
                else:
                    problems.extend(
                        check_block(
                            body,
                            schema,
                            address,
                            meta_arguments=meta_arguments,
                            meta_blocks=meta_blocks,
                        )
                    )
                problems.extend(_reference_problems(body, declared, schemas, address))
        for entry in document.get("provider", []):
            for name, body in entry.items():
                if name in _MARKERS:
                    continue
                address = f"provider.{name}"
                schema = schemas.providers.get(name)
                if schema is None:
                    problems.append(Problem(address, "", "provider not in the schema"))
                    continue
                problems.extend(
                    check_block(body, schema, address, meta_arguments=PROVIDER_META_ARGUMENTS)
                )
                problems.extend(_reference_problems(body, declared, schemas, address))
        for kind in ("output", "variable"):
            for entry in document.get(kind, []):
                for name, body in entry.items():
                    if name not in _MARKERS:
                        address = f"{kind}.{name}"
                        problems.extend(_reference_problems(body, declared, schemas, address))
        for entry in document.get("locals", []):
            for name, value in entry.items():
                if name not in _MARKERS:
                    address = f"local.{name}"
                    problems.extend(_reference_problems(value, declared, schemas, address))
    return sorted(set(problems))


def check_directory(directory: Path, schema_path: Path) -> list[Problem]:
    """Every problem of the ``.tf`` files in ``directory``."""
    documents = [document for _, document in parse_directory(directory)]
    return check_documents(documents, Schemas.load(schema_path))
