"""The OpenAPI documentation page, offline: Swagger UI's files come from the
``fastapi-offline`` package (Swagger UI 5, which reads OpenAPI 3.1; served under
``/docs/assets``), never from a CDN, and the page
has no inline script (the security headers forbid it)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>riskml audit service · API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head><body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body></html>"""


@router.get("/docs")
def docs() -> HTMLResponse:
    """Swagger UI on ``/openapi.json``."""
    return HTMLResponse(_PAGE)


def mount_assets(app: FastAPI) -> None:
    """Serve Swagger UI's files from the installed package."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs/assets", StaticFiles(directory=assets), name="docs-assets")
