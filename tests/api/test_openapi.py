"""The served OpenAPI document is the route table and its models, nothing else."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from flask.testing import FlaskClient
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from refluxo.api.contract import Auth, Call, Route
from refluxo.api.http import HttpApi
from refluxo.api.openapi import SECURITY_SCHEMES, openapi_document
from refluxo.api.routes import ROUTES
from refluxo.api.server import create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime
from tests.api.conftest import CALLER

REF = "#/components/schemas/"
DOCUMENTED = tuple(route for route in ROUTES if route.documented)
"""The API's operations: every route but the run inspector's pages and files."""


def component(document: dict[str, Any], schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The name and schema of the component ``schema`` refers to."""
    name = schema["$ref"].removeprefix(REF)
    return name, document["components"]["schemas"][name]


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def required_names(model: type[BaseModel]) -> set[str]:
    return {
        field.alias or name for name, field in model.model_fields.items() if field.is_required()
    }


@pytest.fixture
def served(secured: FlaskClient) -> dict[str, Any]:
    response = secured.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def test_the_served_document_lists_exactly_the_tables_routes(served: dict[str, Any]) -> None:
    assert served == openapi_document(ROUTES)
    operations = {
        (method.upper(), path): operation["operationId"]
        for path, item in served["paths"].items()
        for method, operation in item.items()
    }
    assert operations == {(r.method, r.path): r.operation_id for r in DOCUMENTED}


def test_the_inspectors_pages_are_not_operations(served: dict[str, Any]) -> None:
    pages = [route for route in ROUTES if not route.documented]
    assert {route.path for route in pages} >= {"/", "/ui", "/docs", "/ui/main.js"}
    assert all(route.media_type != "application/json" for route in pages)
    assert not {route.path for route in pages} & set(served["paths"])


@pytest.mark.parametrize("route", [pytest.param(r, id=r.label) for r in DOCUMENTED])
def test_each_operation_is_its_routes_declaration(served: dict[str, Any], route: Route) -> None:
    operation = served["paths"][route.path][route.method.lower()]
    if route.auth is Auth.PUBLIC:
        assert "security" not in operation
    else:
        name, scheme = SECURITY_SCHEMES[route.auth]
        assert operation["security"] == [{name: []}]
        assert served["components"]["securitySchemes"][name] == scheme

    parameters = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
    expected = set()
    if route.path_model is not None:
        expected |= {("path", name) for name in wire_names(route.path_model)}
    if route.query is not None:
        expected |= {("query", name) for name in wire_names(route.query)}
    assert parameters == expected

    if route.body is None:
        assert "requestBody" not in operation
    else:
        body = operation["requestBody"]
        assert body["required"] is route.body_required
        name, schema = component(served, body["content"]["application/json"]["schema"])
        assert name == route.body.__name__
        assert set(schema["properties"]) == wire_names(route.body)
        assert set(schema.get("required", ())) == required_names(route.body)

    responses = {int(status): reply for status, reply in operation["responses"].items()}
    assert route.success_statuses | route.errors <= set(responses)
    for status in route.success_statuses:
        name, schema = component(served, responses[status]["content"]["application/json"]["schema"])
        assert name == route.response.__name__
    for status in set(responses) - route.success_statuses:
        assert status >= 400
        assert component(served, responses[status]["content"]["application/json"]["schema"])[0] == (
            "ErrorBody"
        )
    assert (401 in responses) is (route.auth is not Auth.PUBLIC)
    assert (413 in responses) is (route.body is not None)


def test_response_schemas_are_the_response_models(served: dict[str, Any]) -> None:
    schemas = served["components"]["schemas"]
    for route in DOCUMENTED:
        if route.response.__name__ == "DocumentView":
            continue  # a root model: an object with any properties
        schema = schemas[route.response.__name__]
        assert set(schema["properties"]) == wire_names(route.response), route.label
        assert set(schema.get("required", ())) <= wire_names(route.response)
    assert schemas["RunView"]["properties"]["currentNodeId"] == {
        "type": "string",
        "nullable": True,
    }
    assert set(schemas["SnapshotStatus"]["enum"]) == {
        "active",
        "paused",
        "error",
        "completed",
        "failed",
    }


# -- a table of one's own: the document follows the models --------------------------------


class Probe(BaseModel):
    """A probe's settings."""

    model_config = ConfigDict(alias_generator=to_camel, strict=True)

    sample_count: Annotated[int, Field(ge=3, le=9)]
    label: str = "probe"


class ProbeView(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True
    )

    sample_count: int
    note: str | None


def run_probe(call: Call) -> ProbeView:
    return ProbeView(sample_count=call.body_as(Probe).sample_count, note=None)


PROBE = Route("POST", "/probes", "runProbe", run_probe, ProbeView, "probed", body=Probe)


def test_a_new_models_fields_and_rules_reach_the_document() -> None:
    document = openapi_document((*ROUTES, PROBE))
    schemas = document["components"]["schemas"]
    assert schemas["Probe"]["properties"] == {
        "sampleCount": {"type": "integer", "minimum": 3, "maximum": 9},
        "label": {"type": "string", "default": "probe"},
    }
    assert schemas["Probe"]["required"] == ["sampleCount"]
    assert schemas["ProbeView"]["properties"]["note"] == {"type": "string", "nullable": True}
    operation = document["paths"]["/probes"]["post"]
    assert operation["security"] == [{"apiKey": []}]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "413", "415", "421"}
    assert "/probes" not in openapi_document(ROUTES)["paths"]


def test_the_dispatcher_enforces_what_the_document_says(runtime: EmbeddedRuntime) -> None:
    api = HttpApi(runtime.service, routes=(*ROUTES, PROBE))
    with create_wsgi_app(api).test_client() as client:
        document = client.get("/openapi.json").get_json()
        assert "/probes" in document["paths"]
        ok = client.post("/probes", json={"sampleCount": 3}, headers=CALLER)
        assert (ok.status_code, ok.get_json()) == (200, {"sampleCount": 3, "note": None})
        low = client.post("/probes", json={"sampleCount": 2})
        assert low.status_code == 400
        assert low.get_json()["error"]["message"] == "field 'sampleCount' must be between 3 and 9"
        text = client.post("/probes", json={"sampleCount": "5"})
        assert text.get_json()["error"]["message"] == "field 'sampleCount' must be of type int"


def test_the_run_routes_publish_their_links(served: dict[str, Any]) -> None:
    """What a stateful fuzzer (or a client) follows: start -> get -> resume -> cancel."""
    links = {
        (path, method, status): sorted(response.get("links", {}))
        for path, item in served["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if response.get("links")
    }
    assert links == {
        ("/runs", "post", "201"): ["CancelRun", "GetRun", "ResumeRun"],
        ("/runs", "post", "200"): ["CancelRun", "GetRun", "ResumeRun"],
        ("/runs/{runId}", "get", "200"): ["CancelRun", "ResumeRun"],
        ("/runs/{runId}/resume", "post", "202"): ["CancelRun", "GetRun"],
        ("/runs/{runId}/cancel", "post", "200"): ["GetRun"],
    }
    link = served["paths"]["/runs"]["post"]["responses"]["201"]["links"]["ResumeRun"]
    assert link["operationId"] == "resumeRun"
    assert link["parameters"] == {"runId": "$response.body#/runId"}
    operation_ids = {
        operation["operationId"] for item in served["paths"].values() for operation in item.values()
    }
    targets = {
        link["operationId"]
        for item in served["paths"].values()
        for operation in item.values()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    }
    assert targets <= operation_ids


def test_a_link_to_an_unknown_operation_is_refused() -> None:
    from dataclasses import replace

    from refluxo.api.contract import Link

    broken = replace(PROBE, links=(Link("Nowhere", "noSuchOperation", (), "a typo"),))
    with pytest.raises(ValueError, match="noSuchOperation"):
        openapi_document((*ROUTES, broken))


def test_every_operation_documents_415_for_a_body_and_421(served: dict[str, Any]) -> None:
    for route in DOCUMENTED:
        responses = served["paths"][route.path][route.method.lower()]["responses"]
        assert ("415" in responses) is (route.body is not None), route.label
        assert "421" in responses, route.label
