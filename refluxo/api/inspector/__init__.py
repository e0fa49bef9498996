"""The run inspector: a web page served by the API itself, on every backend.

The page and its files are package data (``static/``), hand-written or vendored from npm
(Swagger UI, under ``static/vendor/``), so the inspector works offline and needs nothing
but the API. They hold no run data: the page reads runs through the authenticated routes,
with the key the user gives it, which is why the routes serving them may be public.

Every page is sent with a strict Content-Security-Policy: scripts and styles come only
from this server's own files (no inline script), requests go only back to it, and no other
site may frame it. The page writes stored strings as text, never as markup.
"""

from __future__ import annotations

from refluxo.api.inspector.assets import ASSETS, CSS, HTML, JAVASCRIPT, Asset, page

__all__ = ["ASSETS", "CSS", "HTML", "JAVASCRIPT", "Asset", "page"]
