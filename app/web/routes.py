"""The web pages: HTML shells whose scripts read and write through /api/v1 with the browser's key,
so the pages follow the API's rules (dedup, limits, keys) with no second path to the data.

The JavaScript libraries (plotly, 3Dmol) are npm packages installed into app/web/node_modules by
`make setup` (`npm ci --prefix app/web`) and served from here: no page loads anything from a CDN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from app.export_formats import EXPORT_FORMATS
from app.exports import CANDIDATE_COLUMNS
from app.schemas import ID_MAX
from workers.screening.opinions import DEFAULT_PRESCREEN_MARGIN_THZ
from workers.screening.potentials.registry import POTENTIAL_NAMES
from workers.screening.protocols import PROTOCOLS
from workers.screening.types import VERDICTS

WEB = Path(__file__).resolve().parent
NODE_MODULES = WEB / "node_modules"
# URL name -> file inside node_modules (package.json pins the versions)
VENDOR_FILES: dict[str, str] = {
    "plotly.min.js": "plotly.js-dist-min/plotly.min.js",
    "3Dmol-min.js": "3dmol/build/3Dmol-min.js",
}
INSTALL_HINT = "run `make setup` (it runs `npm ci --prefix app/web`)"

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=WEB / "templates")
Id = Annotated[int, PathParam(ge=1, le=ID_MAX)]


def _page(request: Request, template: str, *, title: str, **config: Any) -> HTMLResponse:
    settings = request.app.state.settings
    page = {
        "keysRequired": bool(settings.writes_need_key or settings.private_reads),
        "readsNeedKey": bool(settings.private_reads),
        "vendorMissing": [name for name, rel in VENDOR_FILES.items() if not (NODE_MODULES / rel).is_file()],
        "installHint": INSTALL_HINT,
        **config,
    }
    # inside <script>: "<" escaped, so no value can close the element
    context = {"title": title, "page_json": json.dumps(page).replace("<", "\\u003c"), "page": page}
    return templates.TemplateResponse(request, template, context)


@router.get("/", response_class=HTMLResponse)
def upload_page(request: Request) -> HTMLResponse:
    settings = request.app.state.settings
    return _page(
        request,
        "upload.html",
        title="Upload",
        protocols=sorted(PROTOCOLS),
        potentials=list(POTENTIAL_NAMES),
        defaults={"protocol": settings.protocol, "potential": settings.potential},
        defaultMargin=DEFAULT_PRESCREEN_MARGIN_THZ,
        maxFiles=settings.max_files,
        maxUploadBytes=settings.max_upload_bytes,
    )


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(request: Request, batch_id: Id) -> HTMLResponse:
    return _page(request, "batch.html", title=f"Batch {batch_id}", batchId=batch_id, columns=CANDIDATE_COLUMNS)


@router.get("/candidates", response_class=HTMLResponse)
def candidates_page(request: Request) -> HTMLResponse:
    formats = [{"name": f.name, "label": f.label, "filename": f.filename} for f in EXPORT_FORMATS.values()]
    return _page(
        request,
        "candidates.html",
        title="Results",
        columns=CANDIDATE_COLUMNS,
        verdicts=list(VERDICTS),
        exportFormats=formats,
    )


@router.get("/candidates/{candidate_id}", response_class=HTMLResponse)
def candidate_page(request: Request, candidate_id: Id) -> HTMLResponse:
    return _page(request, "candidate.html", title=f"Candidate {candidate_id}", candidateId=candidate_id)


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request) -> HTMLResponse:
    return _page(request, "reports.html", title="Reports")


@router.get("/static/vendor/{name}")
def vendor_file(name: str) -> FileResponse:
    """A JavaScript library installed by npm, by its URL name (VENDOR_FILES)."""
    rel = VENDOR_FILES.get(name)
    if rel is None:
        raise HTTPException(404, f"no vendored file {name!r}")
    path = NODE_MODULES / rel
    if not path.is_file():
        raise HTTPException(404, f"{name} is not installed: {INSTALL_HINT}")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})
