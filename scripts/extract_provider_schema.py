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
files in ``terraform/`` declare (plus the provider configuration blocks), and writes them
in the shape of ``terraform providers schema -json`` (``block.attributes`` /
``block.block_types``) with sorted keys, so re-running it produces no diff.

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
)

_BASES = {
    "cdktf.TerraformResource": "resource",
    "cdktf.TerraformDataSource": "data",
    "cdktf.TerraformProvider": "provider",
}
_REGISTRY_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/[^/]+/[^/]+/(?P<version>[^/]+)/docs"
    r"(?:/(?:resources|data-sources)/[^ ]+)? (?P<type>[A-Za-z0-9_]+)\}"
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


def used_types(terraform_dir: Path) -> dict[str, set[str]]:
    """Resource, data-source and provider names declared by the ``.tf`` files."""
    import hcl2
    from hcl2 import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    found: dict[str, set[str]] = {"resource": set(), "data": set(), "provider": set()}
    files = sorted(terraform_dir.rglob("*.tf"))
    files = [f for f in files if ".terraform" not in f.relative_to(terraform_dir).parts]
    if not files:
        raise ExtractionError(f"no .tf files under {terraform_dir}")
    for path in files:
        with path.open(encoding="utf-8") as handle:
            document = hcl2.load(handle, serialization_options=options)
        for kind in ("resource", "data"):
            for entry in document.get(kind, []):
                found[kind].update(entry)
        for entry in document.get("provider", []):
            found["provider"].update(entry)
        for entry in document.get("terraform", []):
            for required in entry.get("required_providers", []):
                found["provider"].update(required)
    for kind in ("resource", "data"):
        found["provider"].update(name.split("_", 1)[0] for name in found[kind])
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
        or (ref.kind != "provider" and ref.tf_type in wanted[ref.kind])
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
    wheel_dir: Path, wanted: dict[str, set[str]], packages: Iterable[ProviderPackage] = PACKAGES
) -> dict[str, Any]:
    """The whole document: every package's subset, plus what was not found."""
    schemas: dict[str, Any] = {}
    covered: dict[str, set[str]] = {"resource": set(), "data": set(), "provider": set()}
    for package in packages:
        subset = extract_package(_find_wheel(wheel_dir, package), package, wanted)
        schemas[package.source] = subset
        covered["resource"].update(subset["resource_schemas"])
        covered["data"].update(subset["data_source_schemas"])
        if "provider" in subset:
            covered["provider"].add(package.local_name)
    missing = {kind: sorted(wanted[kind] - covered[kind]) for kind in wanted}
    if any(missing.values()):
        raise ExtractionError(f"types used in terraform/ but not found: {missing}")
    return {
        "format_version": FORMAT_VERSION,
        "generated_by": "scripts/extract_provider_schema.py",
        "note": (
            "Subset of the provider schemas for the types terraform/ uses, in the shape of "
            "`terraform providers schema -json`: attribute flags are present only when true; "
            "max_items 0 means unbounded; attribute types are informational."
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

    wanted = used_types(args.terraform_dir)
    if args.wheel_dir is not None:
        document = build_schema(args.wheel_dir, wanted)
    else:
        with tempfile.TemporaryDirectory(prefix="cdktf-wheels-") as temporary:
            _download(PACKAGES, Path(temporary))
            document = build_schema(Path(temporary), wanted)
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
        source: (len(s["resource_schemas"]), len(s["data_source_schemas"]))
        for source, s in document["provider_schemas"].items()
    }
    print(f"wrote {args.output}: (resources, data sources) per provider {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
