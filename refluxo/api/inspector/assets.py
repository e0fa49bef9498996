"""The inspector's files: which exist, their media types, and the headers they are sent with.

The table is fixed: a route per file (``GET /ui/<name>``), nothing read from a path the
client chose, so no request can reach any other file of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

from refluxo.api.contract import Call, Content

HTML = "text/html; charset=utf-8"
JAVASCRIPT = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
SVG = "image/svg+xml"

_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the package: revalidate rather than keep a stale page.
    "Cache-Control": "no-cache",
}

_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The inspector's Content-Security-Policy: nothing inline, nothing from elsewhere."""

PAGES = frozenset({"index.html", "docs.html"})
"""The HTML pages (the inspector, Swagger UI), each sent under :data:`_POLICY`."""


@cache
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", *name.split("/")).read_bytes()


def page(name: str) -> Content:
    """The HTML page ``name`` (one of :data:`PAGES`), with its security headers."""
    if name not in PAGES:
        raise ValueError(f"no page {name!r}")
    headers = {**_COMMON, "Content-Security-Policy": _POLICY, "X-Frame-Options": "DENY"}
    return Content(_read(name), HTML, MappingProxyType(headers))


@dataclass(frozen=True, slots=True)
class Asset:
    """A file the pages load, served at ``/ui/<name>`` from ``static/<source>``."""

    name: str
    media_type: str
    source: str

    def handler(self, call: Call) -> Content:
        """Answers ``GET /ui/<name>``: the file as packaged."""
        return Content(_read(self.source), self.media_type, MappingProxyType(_COMMON))


_SWAGGER = "vendor/swagger-ui"

ASSETS: tuple[Asset, ...] = (
    Asset("inspector.css", CSS, "inspector.css"),
    Asset("main.js", JAVASCRIPT, "main.js"),
    Asset("api.js", JAVASCRIPT, "api.js"),
    Asset("dom.js", JAVASCRIPT, "dom.js"),
    Asset("format.js", JAVASCRIPT, "format.js"),
    Asset("graph.js", JAVASCRIPT, "graph.js"),
    Asset("runs.js", JAVASCRIPT, "runs.js"),
    Asset("run.js", JAVASCRIPT, "run.js"),
    Asset("favicon.svg", SVG, "favicon.svg"),
    Asset("docs.js", JAVASCRIPT, "docs.js"),
    Asset("swagger-ui-bundle.js", JAVASCRIPT, f"{_SWAGGER}/swagger-ui-bundle.js"),
    Asset("swagger-ui.css", CSS, f"{_SWAGGER}/swagger-ui.css"),
)
"""Every file the pages load (Swagger UI's from the npm package ``swagger-ui-dist``)."""
