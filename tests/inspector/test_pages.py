"""The inspector's pages and files are served by the API itself, on every deployment that
serves callers, with a strict Content-Security-Policy; the run data stays behind the key."""

from __future__ import annotations

import http.client
import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from refluxo.api.http import HttpApi
from refluxo.api.inspector import ASSETS, Asset
from refluxo.api.routes import CALLER_ROUTES, STEP_ROUTES
from refluxo.api.server import create_wsgi_app
from refluxo.host.embedded import EmbeddedRuntime
from tests.api.conftest import CALLER
from tests.deploy.test_serve import KEY, serving
from tests.gcp.test_main_local import ROOT, call, embedded_env
from tests.support.emulators import start_functions_framework

PAGES = ["/", "/ui", "/docs"]


@pytest.mark.parametrize("path", PAGES)
def test_a_page_is_html_under_a_strict_policy(secured: FlaskClient, path: str) -> None:
    response = secured.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy  # no inline script, no other origin
    assert "unsafe" not in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    html = response.get_data(as_text=True)
    assert "<script>" not in html  # every script is a file of this server
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from elsewhere


def test_the_key_field_is_never_sent_by_the_form_itself(secured: FlaskClient) -> None:
    """Submitted by the browser itself (scripts off), the form would have put the key in
    the page's URL (a GET of its named fields): the field has no name, the form posts."""
    html = secured.get("/ui").get_data(as_text=True)
    (form,) = re.findall(r"<form[^>]*>", html)
    assert 'method="post"' in form
    (field,) = re.findall(r'<input id="api-key"[^>]*>', html)
    assert "name=" not in field


def test_api_answers_are_never_cached_nor_sniffed(secured: FlaskClient) -> None:
    for path in ("/runs", "/runs/no-such-run", "/healthz"):
        response = secured.get(path)
        assert response.headers["Cache-Control"] == "no-store", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path


def test_the_page_loads_only_files_the_server_serves(secured: FlaskClient) -> None:
    html = secured.get("/ui").get_data(as_text=True) + secured.get("/docs").get_data(as_text=True)
    referenced = set(re.findall(r"""(?:src|href)="ui/([^"]+)\"""", html))
    assert referenced <= {asset.name for asset in ASSETS}
    assert {"main.js", "inspector.css", "swagger-ui-bundle.js", "docs.js"} <= referenced


@pytest.mark.parametrize("asset", ASSETS, ids=lambda asset: asset.name)
def test_each_file_is_served_with_its_type(secured: FlaskClient, asset: Asset) -> None:
    response = secured.get(f"/ui/{asset.name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == asset.media_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.content_length
    assert response.content_length > 0


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/ui/", "../ui"),
        ("/docs/", "../docs"),
        ("/ui/main.js/", "../main.js"),
        ("/ui/?a=1", "../ui?a=1"),
    ],
)
def test_a_page_asked_with_a_trailing_slash_is_redirected_without(
    secured: FlaskClient, path: str, location: str
) -> None:
    """From ``/ui/``, the page's relative files (``ui/main.js``) would not be found."""
    response = secured.get(path)
    assert response.status_code == 308
    assert response.headers["Location"] == location


def test_a_doubled_slash_is_no_path(secured: FlaskClient) -> None:
    for path in ("/runs//x", "/healthz//", "/ui//"):
        response = secured.get(path, headers=CALLER)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"


def test_no_other_file_of_the_package_is_reachable(secured: FlaskClient) -> None:
    for path in ("/ui/../routes.py", "/ui/assets.py", "/ui/vendor/swagger-ui/LICENSE", "/ui/x"):
        response = secured.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"


def test_the_data_the_page_reads_needs_the_key(
    secured: FlaskClient, runtime: EmbeddedRuntime
) -> None:
    run = runtime.service.start("chain").record
    assert secured.get(f"/runs/{run.run_id}/graph").status_code == 401
    graph = secured.get(f"/runs/{run.run_id}/graph", headers=CALLER)
    assert graph.status_code == 200
    body = graph.get_json()
    assert body["start"] == "n0"
    assert [node["id"] for node in body["nodes"]] == [f"n{i}" for i in range(5)]
    assert {"source": "n0", "target": "n1", "sourceHandle": None} in body["edges"]
    assert "data" not in body["nodes"][0]  # a node's static data stays on the server
    missing = secured.get("/runs/no-such-run/graph", headers=CALLER)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "run_not_found"


def test_the_api_function_serves_the_inspector_and_the_dispatcher_does_not(
    runtime: EmbeddedRuntime,
) -> None:
    with create_wsgi_app(HttpApi(runtime.service, routes=CALLER_ROUTES)).test_client() as api:
        assert api.get("/ui").status_code == 200
        assert api.get("/ui/main.js").status_code == 200
    with create_wsgi_app(HttpApi(runtime.service, routes=STEP_ROUTES)).test_client() as steps:
        assert steps.get("/ui").status_code == 404
        assert steps.get("/healthz").status_code == 200


def test_refluxo_serve_serves_the_inspector(tmp_path: Path) -> None:
    with serving(tmp_path, REFLUXO_API_KEY=KEY) as (host, port):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request("GET", "/ui")
            page = connection.getresponse()
            assert page.status == 200
            assert "Content-Security-Policy" in page.headers
            assert b'src="ui/main.js"' in page.read()
            connection.request("GET", "/runs")
            refused = connection.getresponse()
            assert refused.status == 401
            refused.read()
        finally:
            connection.close()


def test_the_api_function_of_main_py_serves_the_inspector(tmp_path: Path) -> None:
    env = embedded_env(tmp_path, REFLUXO_API_KEY=KEY)
    server = start_functions_framework(ROOT / "main.py", "api", env=env)
    try:
        status, content_type, page = call(server.url, "GET", "/ui")
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert b'src="ui/main.js"' in page
        assert call(server.url, "GET", "/ui/main.js")[:2] == (200, "text/javascript; charset=utf-8")
        assert call(server.url, "GET", "/docs")[0] == 200
        assert call(server.url, "GET", "/runs")[0] == 401
        assert call(server.url, "GET", "/runs", Authorization=f"Bearer {KEY}")[0] == 200
    finally:
        server.stop()
