"""Extract the subset of the Terraform provider schemas that ``terraform/`` uses.

``terraform validate`` needs the provider plugins, which cannot be downloaded here. The
prebuilt CDK for Terraform bindings on PyPI (``cdktf-cdktf-provider-google`` and friends)
are generated from the providers' own schemas and ship the generator's TypeScript output
inside their jsii assembly (``_jsii/provider-*.jsii.tgz``):

* ``package/.jsii`` (JSON) names every resource / data-source class, the Terraform type it
  represents (the registry link in its doc summary) and the source file it lives in;
* each ``package/lib/<module>/*.js`` carries an inline source map whose ``sourcesContent``
  is the generated TypeScript. For every argument of a resource or nested block it has a
  ``// <name> - computed: X, optional: Y, required: Z`` comment, and the
  ``synthesizeHclAttributes`` / ``...ToHclTerraform`` functions say, per argument, whether
  it is a block and whether that block is a list, a set or a single struct.
  A block stored in an ``...OutputReference`` (not a ``...List``) has ``max_items = 1``.

This script reads those, keeps only the resource and data-source types that the ``.tf``
files in ``terraform/`` declare (plus the provider configuration blocks), each from the
package of the provider it is declared with (``provider = google-beta`` takes the type from
the google-beta package), and writes them in the shape of ``terraform providers schema
-json`` (``block.attributes`` / ``block.block_types``) with sorted keys, so re-running it
produces no diff. The packages carry no ephemeral resources: the few the configuration uses
are in :data:`HAND_WRITTEN`, transcribed from the provider's source, and the document names
them under the provider's ``hand_written`` key.

Usage::

    .venv/bin/python scripts/extract_provider_schema.py            # pip download, write
    .venv/bin/python scripts/extract_provider_schema.py --wheel-dir DIR   # wheels at hand
    .venv/bin/python scripts/extract_provider_schema.py --check    # exit 1 if stale
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = ROOT / "terraform"
OUTPUT = TERRAFORM_DIR / "provider-schema.google.json"
FORMAT_VERSION = "refluxo-provider-schema-subset/1"


@dataclass(frozen=True)
class ProviderPackage:
    """One prebuilt CDKTF provider package on PyPI, pinned."""

    local_name: str  # the provider's local name in HCL ("google")
    source: str  # registry address ("registry.terraform.io/hashicorp/google")
    distribution: str  # PyPI name
    version: str  # pinned PyPI version
    module: str  # the Python package inside the wheel

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        return f"{self.distribution.replace('-', '_')}-{self.version}-"


PACKAGES: tuple[ProviderPackage, ...] = (
    # 16.x is generated from hashicorp/google 6.50.0 (the package records the version).
    ProviderPackage(
        "google",
        "registry.terraform.io/hashicorp/google",
        "cdktf-cdktf-provider-google",
        "16.12.1",
        "cdktf_cdktf_provider_google",
    ),
    # The same generator over hashicorp/google-beta 6.50.0: the few resources that exist
    # only in the beta provider (google_project_service_identity).
    ProviderPackage(
        "google-beta",
        "registry.terraform.io/hashicorp/google-beta",
        "cdktf-cdktf-provider-google-beta",
        "16.12.1",
        "cdktf_cdktf_provider_google_beta",
    ),
    ProviderPackage(
        "archive",
        "registry.terraform.io/hashicorp/archive",
        "cdktf-cdktf-provider-archive",
        "11.0.1",
        "cdktf_cdktf_provider_archive",
    ),
    ProviderPackage(
        "random",
        "registry.terraform.io/hashicorp/random",
        "cdktf-cdktf-provider-random",
        "12.0.1",
        "cdktf_cdktf_provider_random",
    ),
    ProviderPackage(
        "time",
        "registry.terraform.io/hashicorp/time",
        "cdktf-cdktf-provider-time",
        "11.0.1",
        "cdktf_cdktf_provider_time",
    ),
)

# Schemas the CDKTF packages do not carry, written by hand from the provider's source, with
# where each comes from. CDKTF generates no bindings for ephemeral resources, so the
# ephemeral random_password (hashicorp/random >= 3.7) that generates the API key is here.
HAND_WRITTEN: dict[str, dict[str, dict[str, Any]]] = {
    "random": {
        "ephemeral": {
            "random_password": {
                "provenance": (
                    "hand-written from hashicorp/terraform-provider-random v3.7 "
                    "internal/provider/ephemeral_password.go (passwordEphemeralResource.Schema)"
                ),
                "block": {
                    "attributes": {
                        "bcrypt_hash": {"computed": True, "sensitive": True, "type": "string"},
                        "length": {"required": True, "type": "number"},
                        "lower": {"computed": True, "optional": True, "type": "bool"},
                        "min_lower": {"computed": True, "optional": True, "type": "number"},
                        "min_numeric": {"computed": True, "optional": True, "type": "number"},
                        "min_special": {"computed": True, "optional": True, "type": "number"},
                        "min_upper": {"computed": True, "optional": True, "type": "number"},
                        "numeric": {"computed": True, "optional": True, "type": "bool"},
                        "override_special": {"optional": True, "type": "string"},
                        "result": {"computed": True, "sensitive": True, "type": "string"},
                        "special": {"computed": True, "optional": True, "type": "bool"},
                        "upper": {"computed": True, "optional": True, "type": "bool"},
                    },
                    "block_types": {},
                },
            }
        }
    }
}

KINDS = ("resource", "data", "ephemeral")
"""The kinds of labelled blocks a provider schema describes."""

_SCHEMA_KEYS = {
    "resource": "resource_schemas",
    "data": "data_source_schemas",
    "ephemeral": "ephemeral_resource_schemas",
}

_BASES = {
    "cdktf.TerraformResource": "resource",
    "cdktf.TerraformDataSource": "data",
    "cdktf.TerraformProvider": "provider",
}
_REGISTRY_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/[^/]+/[^/]+/(?P<version>[^/]+)/docs"
    r"(?:/(?:resources|data-sources)/[^ ]+)? (?P<type>[A-Za-z0-9_-]+)\}"
)
_SOURCE_MAP = re.compile(r"sourceMappingURL=data:application/json;base64,(?P<data>[A-Za-z0-9+/=]+)")
_EXPORT = re.compile(r"^export (?:class|interface|function|const|type|enum) ", re.M)
_CLASS = re.compile(r"^export class (?P<name>\w+) extends (?P<base>[\w.]+)")
_INTERFACE = re.compile(r"^export interface (?P<name>\w+)")
_HCL_FUNCTION = re.compile(r"^export function (?P<name>\w+)ToHclTerraform\(")
_FLAGS = re.compile(
    r"^[ \t]*// (?P<name>[A-Za-z0-9_]+) - computed: (?P<computed>true|false), "
    r"optional: (?P<optional>true|false), required: (?P<required>true|false)\n"
    r"(?=(?P<next>(?:[^\n]*\n){1,3}))",  # look ahead: the next flags may follow at once
    re.M,
)
_HCL_ATTRIBUTE = re.compile(
    r'^[ \t]*"?(?P<name>[A-Za-z0-9_]+)"?: \{\n'
    r"[ \t]*value: (?P<value>[^\n]*),\n"
    r"[ \t]*isBlock: (?P<block>true|false),\n"
    r'[ \t]*type: "(?P<type>\w+)",\n'
    r'[ \t]*storageClassType: "(?P<storage>\w+)",\n',
    re.M,
)
_STRUCT_CONVERTER = re.compile(r"(?<![\w.])(?P<name>[a-z]\w*)ToHclTerraform\b")
_NESTED_HOLDER = re.compile(
    r"private _\w+ = new (?P<cls>\w+?)(?P<kind>OutputReference|List)\(this, \"[^\"]+\""
)
_STRUCT_PROPERTY = re.compile(r"struct!\.(?P<name>\w+)")
_PLAIN_HOLDER = re.compile(r"private _\w+\??: (?P<type>[^;]+);")
_GETTER_KINDS = {
    "getStringAttribute": "string",
    "getNumberAttribute": "number",
    "getBooleanAttribute": "bool",
    "getListAttribute": "list(string)",
    "getNumberListAttribute": "list(number)",
    "getStringMapAttribute": "map(string)",
    "getNumberMapAttribute": "map(number)",
    "getBooleanMapAttribute": "map(bool)",
}
_STORAGE_TYPES = {
    "string": "string",
    "number": "number",
    "boolean": "bool",
    "stringMap": "map(string)",
    "numberMap": "map(number)",
    "booleanMap": "map(bool)",
}


class ExtractionError(RuntimeError):
    """The package did not have the shape this script understands; the message says where."""


@dataclass
class Module:
    """The generated TypeScript of one resource / data source / provider module."""

    classes: dict[str, str] = field(default_factory=dict)
    interfaces: dict[str, str] = field(default_factory=dict)
    hcl_functions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TypeRef:
    kind: str  # resource | data | provider
    tf_type: str
    class_name: str
    module_dir: str


# --------------------------------------------------------------------------------------
# Which types the configuration uses
# --------------------------------------------------------------------------------------


def provider_of(type_name: str, body: Any) -> str:
    """The local name of the provider a block belongs to: its ``provider`` meta-argument
    (``google-beta`` or ``google-beta.alias``) or else its type's prefix (``google``)."""
    value = body.get("provider") if isinstance(body, dict) else None
    if isinstance(value, str):
        name = value.strip()
        if name.startswith("${") and name.endswith("}"):
            name = name[2:-1]
        return name.split(".", 1)[0].strip()
    return type_name.split("_", 1)[0]


def used_types_by_provider(terraform_dir: Path) -> dict[str, dict[str, set[str]]]:
    """Per provider local name, the resource, data-source and ephemeral types the ``.tf``
    files declare with it; every provider of ``required_providers`` and every ``provider``
    block is a key (with empty sets if nothing of it is declared)."""
    import hcl2
    from hcl2 import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    found: dict[str, dict[str, set[str]]] = {}

    def slot(provider: str) -> dict[str, set[str]]:
        return found.setdefault(provider, {kind: set() for kind in KINDS})

    files = sorted(terraform_dir.rglob("*.tf"))
    files = [f for f in files if ".terraform" not in f.relative_to(terraform_dir).parts]
    if not files:
        raise ExtractionError(f"no .tf files under {terraform_dir}")
    for path in files:
        with path.open(encoding="utf-8") as handle:
            document = hcl2.load(handle, serialization_options=options)
        for kind in KINDS:
            for entry in document.get(kind, []):
                for type_name, instances in entry.items():
                    for body in instances.values():
                        slot(provider_of(type_name, body))[kind].add(type_name)
        for entry in document.get("provider", []):
            for name in entry:
                slot(name)
        for entry in document.get("terraform", []):
            for required in entry.get("required_providers", []):
                for name in required:
                    slot(name)
    return found


def used_types(terraform_dir: Path) -> dict[str, set[str]]:
    """Resource, data-source, ephemeral and provider names declared by the ``.tf`` files,
    whatever provider they belong to."""
    by_provider = used_types_by_provider(terraform_dir)
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for kinds in by_provider.values():
        for kind in KINDS:
            found[kind] |= kinds[kind]
    found["provider"] = set(by_provider)
    return found


# --------------------------------------------------------------------------------------
# Reading a wheel
# --------------------------------------------------------------------------------------


def _assembly_bytes(wheel: Path, package: ProviderPackage) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        names = [
            n
            for n in archive.namelist()
            if n.startswith(f"{package.module}/_jsii/") and n.endswith(".jsii.tgz")
        ]
        if len(names) != 1:
            raise ExtractionError(f"{wheel.name}: expected one _jsii/*.jsii.tgz, found {names}")
        return archive.read(names[0])


def _tar_members(blob: bytes) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                yield member.name, handle.read()


def _type_index(assembly: dict[str, Any], package: ProviderPackage) -> tuple[str, list[TypeRef]]:
    refs: list[TypeRef] = []
    versions: set[str] = set()
    for fqn, spec in assembly["types"].items():
        kind = _BASES.get(spec.get("base", ""))
        if spec.get("kind") != "class" or kind is None:
            continue
        match = _REGISTRY_LINK.search(spec.get("docs", {}).get("summary", ""))
        if match is None:
            raise ExtractionError(f"{fqn}: no registry link in its doc summary")
        versions.add(match.group("version"))
        filename = spec["locationInModule"]["filename"]  # src/<module>/index.ts
        parts = Path(filename).parts
        if len(parts) < 3 or parts[0] != "src":
            raise ExtractionError(f"{fqn}: unexpected source location {filename}")
        tf_type = match.group("type") if kind != "provider" else package.local_name
        refs.append(TypeRef(kind, tf_type, spec["name"], parts[1]))
    if len(versions) != 1:
        raise ExtractionError(f"{package.distribution}: provider versions {sorted(versions)}")
    return versions.pop(), refs


def _typescript_sources(js: bytes, where: str) -> Iterator[str]:
    match = _SOURCE_MAP.search(js.decode("utf-8"))
    if match is None:
        raise ExtractionError(f"{where}: no inline source map")
    source_map = json.loads(base64.b64decode(match.group("data")))
    for text in source_map.get("sourcesContent") or []:
        if text:
            yield text


def _split_module(sources: Iterable[str]) -> Module:
    module = Module()
    for source in sources:
        starts = [m.start() for m in _EXPORT.finditer(source)] + [len(source)]
        for begin, end in itertools.pairwise(starts):
            chunk = source[begin:end]
            if cls := _CLASS.match(chunk):
                module.classes[cls.group("name")] = chunk
            elif interface := _INTERFACE.match(chunk):
                module.interfaces[interface.group("name")] = chunk
            elif fn := _HCL_FUNCTION.match(chunk):
                name = fn.group("name")
                module.hcl_functions[name[0].upper() + name[1:]] = chunk
    return module


# --------------------------------------------------------------------------------------
# Building a block schema from one module
# --------------------------------------------------------------------------------------


def _computed_type(following: str) -> str | None:
    for getter, kind in _GETTER_KINDS.items():
        if f"this.{getter}(" in following:
            return kind
    if holder := _NESTED_HOLDER.search(following):
        return "list(object)" if holder.group("kind") == "List" else "object"
    if "new cdktf.StringMap(" in following:
        return "map(string)"
    if "new cdktf.NumberMap(" in following:
        return "map(number)"
    if "new cdktf.BooleanMap(" in following:
        return "map(bool)"
    return None


def _attribute_type(hcl_type: str, storage: str) -> str:
    if storage in _STORAGE_TYPES:
        return _STORAGE_TYPES[storage]
    if storage in ("stringList", "numberList", "booleanList"):
        element = {"stringList": "string", "numberList": "number", "booleanList": "bool"}[storage]
        return f"{'set' if hcl_type == 'set' else 'list'}({element})"
    return storage


@dataclass(frozen=True)
class _Flags:
    computed: bool
    optional: bool
    required: bool
    following: str  # the source lines right after the flags (how the value is held)


def _class_flags(source: str) -> dict[str, _Flags]:
    return {
        m.group("name"): _Flags(
            m.group("computed") == "true",
            m.group("optional") == "true",
            m.group("required") == "true",
            m.group("next"),
        )
        for m in _FLAGS.finditer(source)
    }


def _interface_flags(source: str, hcl: dict[str, re.Match[str]], where: str) -> dict[str, _Flags]:
    """Flags from a plain struct interface (provider configuration blocks have no
    OutputReference class): ``readonly camelName?: Type;`` is optional, without ``?``
    required; the HCL converter names the property as ``struct!.camelName``."""
    flags: dict[str, _Flags] = {}
    for name, entry in hcl.items():
        prop = _STRUCT_PROPERTY.search(entry.group("value"))
        if prop is None:
            raise ExtractionError(f"{where}.{name}: no struct property in {entry.group('value')}")
        declaration = re.search(
            rf"^[ \t]*readonly {prop.group('name')}(?P<opt>\??): (?P<type>[^;]+);", source, re.M
        )
        if declaration is None:
            raise ExtractionError(f"{where}.{name}: property {prop.group('name')} not declared")
        optional = declaration.group("opt") == "?"
        flags[name] = _Flags(
            False, optional, not optional, f"private _{name}?: {declaration.group('type')};\n"
        )
    return flags


def _max_items(following: str) -> int | None:
    """1 for a block held in a single OutputReference, 0 (unbounded) for a List, None if
    the generated code does not say (provider blocks are always plain arrays)."""
    if holder := _NESTED_HOLDER.search(following):
        return 1 if holder.group("kind") == "OutputReference" else 0
    if plain := _PLAIN_HOLDER.search(following):
        return None if "[]" in plain.group("type") else 1
    return None


def _block(module: Module, flags: dict[str, _Flags], hcl_text: str, where: str) -> dict[str, Any]:
    hcl = {m.group("name"): m for m in _HCL_ATTRIBUTE.finditer(hcl_text)}
    unknown = sorted(set(hcl) - set(flags))
    if unknown:
        raise ExtractionError(f"{where}: arguments without flags: {unknown}")
    attributes: dict[str, Any] = {}
    block_types: dict[str, Any] = {}
    for name in sorted(flags):
        flag = flags[name]
        entry = hcl.get(name)
        if entry is not None and entry.group("block") == "true":
            block_types[name] = _block_type(module, flag, entry, f"{where}.{name}")
            continue
        attribute: dict[str, Any] = {}
        if flag.required:
            attribute["required"] = True
        if flag.optional:
            attribute["optional"] = True
        if flag.computed:
            attribute["computed"] = True
        if entry is not None:
            attribute["type"] = _attribute_type(entry.group("type"), entry.group("storage"))
        elif not flag.computed:
            raise ExtractionError(f"{where}.{name}: settable but not synthesized")
        elif (kind := _computed_type(flag.following)) is not None:
            attribute["type"] = kind
        attributes[name] = attribute
    return {"attributes": attributes, "block_types": block_types}


def _block_type(module: Module, flag: _Flags, entry: re.Match[str], where: str) -> dict[str, Any]:
    converter = _STRUCT_CONVERTER.search(entry.group("value"))
    if converter is None:
        raise ExtractionError(f"{where}: no struct converter")
    struct = converter.group("name")[0].upper() + converter.group("name")[1:]
    nested_hcl = module.hcl_functions.get(struct)
    if nested_hcl is None:
        raise ExtractionError(f"{where}: no {struct}ToHclTerraform")
    nested_hcl_entries = {m.group("name"): m for m in _HCL_ATTRIBUTE.finditer(nested_hcl)}
    if (reference := module.classes.get(f"{struct}OutputReference")) is not None:
        nested_flags = _class_flags(reference)
    elif (interface := module.interfaces.get(struct)) is not None:
        nested_flags = _interface_flags(interface, nested_hcl_entries, where)
    else:
        raise ExtractionError(f"{where}: neither {struct}OutputReference nor {struct} found")
    nesting = {"list": "list", "set": "set", "struct": "single"}.get(entry.group("type"))
    if nesting is None:
        raise ExtractionError(f"{where}: block type {entry.group('type')}")
    block_type: dict[str, Any] = {
        "nesting_mode": nesting,
        "block": _block(module, nested_flags, nested_hcl, where),
    }
    if nesting != "single":
        block_type["min_items"] = 1 if flag.required else 0
        maximum = _max_items(flag.following)
        if maximum is not None:
            block_type["max_items"] = maximum
    return block_type


def _top_block(module: Module, ref: TypeRef) -> dict[str, Any]:
    source = module.classes.get(ref.class_name)
    if source is None:
        raise ExtractionError(f"{ref.tf_type}: class {ref.class_name} not in its module")
    marker = source.find("synthesizeHclAttributes()")
    if marker < 0:
        raise ExtractionError(f"{ref.tf_type}: no synthesizeHclAttributes")
    return _block(module, _class_flags(source), source[marker:], ref.tf_type)


def extract_package(
    wheel: Path, package: ProviderPackage, wanted: dict[str, set[str]]
) -> dict[str, Any]:
    """The schema subset of one provider package for the wanted types."""
    blob = _assembly_bytes(wheel, package)
    assembly: dict[str, Any] | None = None
    for name, data in _tar_members(blob):
        if name == "package/.jsii":
            assembly = json.loads(data)
            break
    if assembly is None:
        raise ExtractionError(f"{wheel.name}: no package/.jsii")
    if assembly.get("version") != package.version:
        raise ExtractionError(f"{wheel.name}: assembly version {assembly.get('version')}")
    provider_version, refs = _type_index(assembly, package)
    del assembly
    selected = [
        ref
        for ref in refs
        if (ref.kind == "provider" and package.local_name in wanted["provider"])
        or (ref.kind != "provider" and ref.tf_type in wanted.get(ref.kind, set()))
    ]
    directories = {ref.module_dir for ref in selected}
    sources: dict[str, list[str]] = {d: [] for d in directories}
    for name, data in _tar_members(blob):
        parts = name.split("/")
        in_wanted_module = (
            len(parts) >= 4 and parts[:2] == ["package", "lib"] and parts[2] in sources
        )
        if in_wanted_module and name.endswith(".js"):
            sources[parts[2]].extend(_typescript_sources(data, name))
    modules = {d: _split_module(texts) for d, texts in sources.items()}
    result: dict[str, Any] = {
        "provider_version": provider_version,
        "extracted_from": package.requirement,
        "resource_schemas": {},
        "data_source_schemas": {},
        "ephemeral_resource_schemas": {},
    }
    for ref in sorted(selected, key=lambda r: (r.kind, r.tf_type)):
        block = _top_block(modules[ref.module_dir], ref)
        if ref.kind == "provider":
            result["provider"] = {"block": block}
        elif ref.kind == "resource":
            result["resource_schemas"][ref.tf_type] = {"block": block}
        else:
            result["data_source_schemas"][ref.tf_type] = {"block": block}
    return result


# --------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------


def _download(packages: Iterable[ProviderPackage], into: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(into),
        *(p.requirement for p in packages),
    ]
    subprocess.run(command, check=True)


def _find_wheel(directory: Path, package: ProviderPackage) -> Path:
    matches = sorted(directory.glob(f"{package.wheel_prefix}*.whl"))
    if not matches:
        raise ExtractionError(f"no {package.requirement} wheel in {directory}")
    return matches[0]


def build_schema(
    wheel_dir: Path,
    usage: dict[str, dict[str, set[str]]],
    packages: Iterable[ProviderPackage] = PACKAGES,
    hand_written: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The whole document: per used provider, its package's subset for the types declared
    with it, plus the hand-written schemas it uses; fails naming what was not found."""
    extra = HAND_WRITTEN if hand_written is None else hand_written
    by_name = {package.local_name: package for package in packages}
    unknown = sorted(set(usage) - set(by_name))
    if unknown:
        raise ExtractionError(f"providers used in terraform/ without a package: {unknown}")
    schemas: dict[str, Any] = {}
    missing: dict[str, dict[str, list[str]]] = {}
    for name in sorted(usage):
        package = by_name[name]
        wanted = {kind: set(usage[name].get(kind, set())) for kind in KINDS}
        wanted["provider"] = {name}
        subset = extract_package(_find_wheel(wheel_dir, package), package, wanted)
        notes: dict[str, str] = {}
        for kind, entries in extra.get(name, {}).items():
            for type_name, entry in entries.items():
                if type_name in wanted[kind]:
                    subset[_SCHEMA_KEYS[kind]][type_name] = {"block": entry["block"]}
                    notes[f"{kind}.{type_name}"] = entry["provenance"]
        if notes:
            subset["hand_written"] = notes
        schemas[package.source] = subset
        gaps = {
            kind: sorted(wanted[kind] - set(subset[_SCHEMA_KEYS[kind]]))
            for kind in KINDS
            if wanted[kind] - set(subset[_SCHEMA_KEYS[kind]])
        }
        if "provider" not in subset:
            gaps["provider"] = [name]
        if gaps:
            missing[name] = gaps
    if missing:
        raise ExtractionError(f"types used in terraform/ but not found: {missing}")
    return {
        "format_version": FORMAT_VERSION,
        "generated_by": "scripts/extract_provider_schema.py",
        "note": (
            "Subset of the provider schemas for the types terraform/ uses, in the shape of "
            "`terraform providers schema -json`: attribute flags are present only when true; "
            "max_items 0 means unbounded; attribute types are informational. Entries listed "
            "under a provider's hand_written were transcribed from the provider's source "
            "(the packages carry no ephemeral resources)."
        ),
        "provider_schemas": schemas,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel-dir", type=Path, help="directory holding the pinned wheels")
    parser.add_argument("--terraform-dir", type=Path, default=TERRAFORM_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="exit 1 if the output would change")
    args = parser.parse_args(argv)

    usage = used_types_by_provider(args.terraform_dir)
    needed = [package for package in PACKAGES if package.local_name in usage]
    if args.wheel_dir is not None:
        document = build_schema(args.wheel_dir, usage)
    else:
        with tempfile.TemporaryDirectory(prefix="cdktf-wheels-") as temporary:
            _download(needed, Path(temporary))
            document = build_schema(Path(temporary), usage)
    text = render(document)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; re-run without --check", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    counts = {
        source: tuple(len(s[_SCHEMA_KEYS[kind]]) for kind in KINDS)
        for source, s in document["provider_schemas"].items()
    }
    print(f"wrote {args.output}: (resources, data sources, ephemeral) per provider {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
