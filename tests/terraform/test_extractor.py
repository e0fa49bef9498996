"""``scripts/extract_provider_schema.py``: its parsing, and the file it committed."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.terraform.hcl_config import ROOT, SCHEMA_PATH, TERRAFORM_DIR

SCRIPT = ROOT / "scripts" / "extract_provider_schema.py"


@pytest.fixture(scope="module")
def extractor() -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_provider_schema", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_schema_covers_exactly_the_types_the_configuration_uses(extractor: ModuleType) -> None:
    usage = extractor.used_types_by_provider(TERRAFORM_DIR)
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    covered: dict[str, dict[str, set[str]]] = {}
    for source, provider in document["provider_schemas"].items():
        assert "provider" in provider, source
        covered[source.rsplit("/", 1)[-1]] = {
            "resource": set(provider["resource_schemas"]),
            "data": set(provider["data_source_schemas"]),
            "ephemeral": set(provider.get("ephemeral_resource_schemas", {})),
        }
    assert covered == usage, "re-run scripts/extract_provider_schema.py"
    assert set(usage) == {"google", "google-beta", "archive", "random", "time"}
    assert usage["google-beta"]["resource"] == {"google_project_service_identity"}
    assert usage["random"]["ephemeral"] == {"random_password"}


def test_schema_file_is_in_the_scripts_canonical_form(extractor: ModuleType) -> None:
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    assert extractor.render(json.loads(text)) == text
    assert json.loads(text)["format_version"] == extractor.FORMAT_VERSION


# A made-up module in the shape the CDKTF generator writes (names and docs are invented).
WIDGET_TS = """
import * as cdktf from 'cdktf';
export interface GoogleWidgetConfig extends cdktf.TerraformMetaArguments {
  readonly name: string;
}
export interface GoogleWidgetPart {
  readonly size?: number;
}
export function googleWidgetPartToHclTerraform(struct?: GoogleWidgetPart): any {
  const attrs = {
    size: {
      value: cdktf.numberToHclTerraform(struct!.size),
      isBlock: false,
      type: "simple",
      storageClassType: "number",
    },
  };
  return attrs;
}
export class GoogleWidgetPartOutputReference extends cdktf.ComplexObject {
  // serial - computed: true, optional: false, required: false
  public get serial() {
    return this.getStringAttribute('serial');
  }

  // size - computed: false, optional: true, required: false
  private _size?: number;
}
export interface GoogleWidgetTag {
  readonly key: string;
}
export function googleWidgetTagToHclTerraform(struct?: GoogleWidgetTag): any {
  const attrs = {
    key: {
      value: cdktf.stringToHclTerraform(struct!.key),
      isBlock: false,
      type: "simple",
      storageClassType: "string",
    },
  };
  return attrs;
}
export class GoogleWidgetTagOutputReference extends cdktf.ComplexObject {
  // key - computed: false, optional: false, required: true
  private _key?: string;
}
export class GoogleWidgetTagList extends cdktf.ComplexList {
}
export class GoogleWidget extends cdktf.TerraformResource {
  // id - computed: true, optional: true, required: false
  private _id?: string;

  // labels - computed: false, optional: true, required: false
  private _labels?: { [key: string]: string };

  // name - computed: false, optional: false, required: true
  private _name?: string;

  // self_link - computed: true, optional: false, required: false
  public get selfLink() {
    return this.getStringAttribute('self_link');
  }

  // part - computed: false, optional: false, required: true
  private _part = new GoogleWidgetPartOutputReference(this, "part");

  // tag - computed: false, optional: true, required: false
  private _tag = new GoogleWidgetTagList(this, "tag", true);

  protected synthesizeHclAttributes(): { [name: string]: any } {
    const attrs = {
      id: {
        value: cdktf.stringToHclTerraform(this._id),
        isBlock: false,
        type: "simple",
        storageClassType: "string",
      },
      labels: {
        value: cdktf.hashMapperHcl(cdktf.stringToHclTerraform)(this._labels),
        isBlock: false,
        type: "map",
        storageClassType: "stringMap",
      },
      name: {
        value: cdktf.stringToHclTerraform(this._name),
        isBlock: false,
        type: "simple",
        storageClassType: "string",
      },
      part: {
        value: googleWidgetPartToHclTerraform(this._part.internalValue),
        isBlock: true,
        type: "list",
        storageClassType: "GoogleWidgetPartList",
      },
      tag: {
        value: cdktf.listMapperHcl(googleWidgetTagToHclTerraform, true)(this._tag.internalValue),
        isBlock: true,
        type: "set",
        storageClassType: "GoogleWidgetTagList",
      },
    };
    return attrs;
  }
}
"""


def _js_with_source_map(typescript: str) -> bytes:
    source_map = {"version": 3, "sources": ["index.ts"], "sourcesContent": [typescript]}
    encoded = base64.b64encode(json.dumps(source_map).encode()).decode()
    return f"'use strict';\n//# sourceMappingURL=data:application/json;base64,{encoded}".encode()


def _fake_wheel(directory: Path, assembly_version: str = "16.0.0") -> Path:
    def entry(name: str, kind: str, module: str, tf_type: str) -> dict[str, object]:
        folder = "data-sources" if kind == "cdktf.TerraformDataSource" else "resources"
        return {
            "kind": "class",
            "base": kind,
            "name": name,
            "docs": {
                "summary": "Represents a {@link https://registry.terraform.io/providers/hashicorp/"
                f"google/6.50.0/docs/{folder}/{tf_type[7:]} {tf_type}}}."
            },
            "locationInModule": {"filename": f"src/{module}/index.ts", "line": 1},
        }

    assembly = {
        "name": "@cdktf/provider-google",
        "version": assembly_version,
        "types": {
            "@cdktf/provider-google.widget.GoogleWidget": entry(
                "GoogleWidget", "cdktf.TerraformResource", "widget", "google_widget"
            ),
            "@cdktf/provider-google.gadget.Gadget": entry(
                "Gadget", "cdktf.TerraformResource", "gadget", "google_gadget"
            ),
        },
    }
    members = {
        "package/.jsii": json.dumps(assembly).encode(),
        "package/lib/widget/index.js": _js_with_source_map(WIDGET_TS),
        "package/lib/gadget/index.js": b"broken on purpose: never read",
    }
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    wheel = directory / "cdktf_cdktf_provider_google-16.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(
            "cdktf_cdktf_provider_google/_jsii/provider-google@16.0.0.jsii.tgz", tgz.getvalue()
        )
    return wheel


def _package(extractor: ModuleType) -> object:
    return extractor.ProviderPackage(
        "google",
        "registry.terraform.io/hashicorp/google",
        "cdktf-cdktf-provider-google",
        "16.0.0",
        "cdktf_cdktf_provider_google",
    )


def test_extract_package_reads_flags_nesting_and_block_sizes(
    extractor: ModuleType, tmp_path: Path
) -> None:
    wheel = _fake_wheel(tmp_path)
    wanted = {"resource": {"google_widget"}, "data": set(), "provider": set()}
    subset = extractor.extract_package(wheel, _package(extractor), wanted)
    assert subset["provider_version"] == "6.50.0"
    assert subset["extracted_from"] == "cdktf-cdktf-provider-google==16.0.0"
    assert subset["data_source_schemas"] == {}
    assert subset["resource_schemas"] == {
        "google_widget": {
            "block": {
                "attributes": {
                    "id": {"computed": True, "optional": True, "type": "string"},
                    "labels": {"optional": True, "type": "map(string)"},
                    "name": {"required": True, "type": "string"},
                    "self_link": {"computed": True, "type": "string"},
                },
                "block_types": {
                    "part": {
                        "nesting_mode": "list",
                        "min_items": 1,
                        "max_items": 1,
                        "block": {
                            "attributes": {
                                "serial": {"computed": True, "type": "string"},
                                "size": {"optional": True, "type": "number"},
                            },
                            "block_types": {},
                        },
                    },
                    "tag": {
                        "nesting_mode": "set",
                        "min_items": 0,
                        "max_items": 0,
                        "block": {
                            "attributes": {"key": {"required": True, "type": "string"}},
                            "block_types": {},
                        },
                    },
                },
            }
        }
    }


def test_extract_package_refuses_a_wheel_of_another_version(
    extractor: ModuleType, tmp_path: Path
) -> None:
    wheel = _fake_wheel(tmp_path, assembly_version="15.9.9")
    wanted = {"resource": {"google_widget"}, "data": set(), "provider": set()}
    with pytest.raises(extractor.ExtractionError, match="assembly version"):
        extractor.extract_package(wheel, _package(extractor), wanted)


def test_build_schema_names_the_types_it_could_not_find(
    extractor: ModuleType, tmp_path: Path
) -> None:
    _fake_wheel(tmp_path)
    usage = {"google": {"resource": {"google_widget", "google_sprocket"}, "data": set()}}
    with pytest.raises(extractor.ExtractionError, match="google_sprocket"):
        extractor.build_schema(tmp_path, usage, packages=[_package(extractor)])


def test_build_schema_adds_hand_written_entries_with_their_provenance(
    extractor: ModuleType, tmp_path: Path
) -> None:
    _fake_wheel(tmp_path)
    block = {"attributes": {"size": {"required": True, "type": "number"}}, "block_types": {}}
    hand_written = {
        "google": {"ephemeral": {"google_token": {"provenance": "from x.go", "block": block}}}
    }
    usage = {"google": {"resource": {"google_widget"}, "ephemeral": {"google_token"}}}
    with pytest.raises(extractor.ExtractionError, match="provider"):
        # The fake package has no provider class: reported, not silently skipped.
        extractor.build_schema(
            tmp_path, usage, packages=[_package(extractor)], hand_written=hand_written
        )


def test_build_schema_refuses_a_provider_without_a_package(
    extractor: ModuleType, tmp_path: Path
) -> None:
    with pytest.raises(extractor.ExtractionError, match="without a package: \\['nowhere'\\]"):
        extractor.build_schema(tmp_path, {"nowhere": {}}, packages=[_package(extractor)])


def test_used_types_reads_resources_data_sources_and_providers(
    extractor: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "a.tf").write_text(
        'terraform {\n  required_providers {\n    google = { source = "hashicorp/google" }\n'
        '  }\n}\nresource "google_widget" "w" {}\ndata "archive_file" "z" {}\n'
        'resource "random_password" "p" {}\n'
        'resource "google_gadget" "b" {\n  provider = google-beta\n}\n'
        'ephemeral "random_password" "e" {}\nprovider "time" {}\n',
        encoding="utf-8",
    )
    used = extractor.used_types(tmp_path)
    assert used == {
        "resource": {"google_widget", "random_password", "google_gadget"},
        "data": {"archive_file"},
        "ephemeral": {"random_password"},
        "provider": {"google", "google-beta", "archive", "random", "time"},
    }
    by_provider = extractor.used_types_by_provider(tmp_path)
    assert by_provider == {
        "google": {"resource": {"google_widget"}, "data": set(), "ephemeral": set()},
        "google-beta": {"resource": {"google_gadget"}, "data": set(), "ephemeral": set()},
        "archive": {"resource": set(), "data": {"archive_file"}, "ephemeral": set()},
        "random": {
            "resource": {"random_password"},
            "data": set(),
            "ephemeral": {"random_password"},
        },
        "time": {"resource": set(), "data": set(), "ephemeral": set()},
    }
