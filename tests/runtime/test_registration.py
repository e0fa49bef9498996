"""What registration prepares once: the stored form of a workflow, its engine, and the
names of deliveries."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from refluxo.runtime.app import definition_version
from refluxo.runtime.ids import delivery_name
from refluxo.runtime.ports import Delivery
from tests.support.apps import build_app
from tests.support.clock import FakeClock


def test_a_started_runtime_has_built_the_engines_of_its_workflows(db_path: Path) -> None:
    app = build_app(FakeClock())
    versions = [spec.version for spec in app.workflows.values()]
    runtime = EmbeddedRuntime(app, db_path, workers=1)
    assert [app.cached_engine(version) for version in versions] == [None] * len(versions)
    with runtime:
        assert all(app.cached_engine(version) is not None for version in versions)


def test_a_runtime_without_workers_builds_no_engine_up_front(db_path: Path) -> None:
    app = build_app(FakeClock())
    with EmbeddedRuntime(app, db_path, workers=0):
        assert all(app.cached_engine(spec.version) is None for spec in app.workflows.values())


def test_the_stored_definition_is_the_registered_wire_form(runtime: EmbeddedRuntime) -> None:
    run = runtime.service.start("approval", {"who": "ada"}).record
    spec = runtime.app.get_workflow("approval")
    stored = runtime.store.get_definition(run.definition_version)
    assert (run.definition_version, stored) == (spec.version, spec.wire)
    assert definition_version(spec.wire) == spec.version


def test_a_workflow_registered_again_with_other_content_has_its_own_wire_form(
    app: App,
) -> None:
    first = app.workflow("pair", {"nodes": [{"id": "a", "type": "echo", "data": {"x": 1}}]})
    second = app.workflow("pair", {"nodes": [{"id": "a", "type": "echo", "data": {"x": 2}}]})
    assert first.wire["nodes"][0]["data"] == {"x": 1}
    assert second.wire["nodes"][0]["data"] == {"x": 2}
    assert first.version != second.version


def test_a_delivery_name_is_its_fields_hash_and_a_changed_copy_names_its_own() -> None:
    delivery = Delivery("run-1", 3, 1_000, 1)
    assert delivery.name == delivery_name("run-1", 3, 1_000, 1)
    assert delivery.name is delivery.name  # computed once
    later = dataclasses.replace(delivery, version=4)
    assert later.name == delivery_name("run-1", 4, 1_000, 1)
    retried = dataclasses.replace(delivery, platform_retries=2)
    assert (retried == delivery, retried.name) == (True, delivery.name)
    assert pickle.loads(pickle.dumps(delivery)).name == delivery.name
    assert "name" not in repr(delivery)
