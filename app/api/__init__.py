"""HTTP routes: the versioned API (/api/v1) and the health probes."""

from fastapi import APIRouter

from app.api import batches, candidates, reports

api_router = APIRouter(prefix="/api/v1")
for module in (batches, candidates, reports):
    api_router.include_router(module.router)
