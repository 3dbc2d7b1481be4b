"""HTTP routes: the versioned API (/api/v1) and the health probes."""

from fastapi import APIRouter, Depends

from app.api import batches, candidate_exports, candidates, reports, sources
from app.api.deps import CALLER_RESPONSES, get_caller

# one rule for every route: who may call (API keys, rate limit) is decided by `get_caller`
api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(get_caller)], responses=CALLER_RESPONSES)
# candidate_exports before candidates: /candidates/{candidate_id} would otherwise take /candidates/export
for module in (batches, candidate_exports, candidates, reports, sources):
    api_router.include_router(module.router)
api_router.include_router(candidates.csv_router)
