"""The FastAPI app factory: settings, database, artifact store and Celery client on app.state;
the handlers that turn client mistakes and a database outage into 4xx/503, never 500; CORS and
trusted hosts when configured."""

from __future__ import annotations

import logging
import math
import reprlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from optimade.exceptions import OptimadeHTTPException
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles

from app.api import api_router
from app.api.health import router as health_router
from app.config import Settings, get_settings
from app.limits import BodySizeLimit
from app.optimade import optimade_error
from app.optimade import router as optimade_router
from app.web.routes import WEB
from app.web.routes import router as web_router
from models.artifacts import ArtifactMissing, ArtifactStore
from models.session import create_db_engine, create_session_factory
from workers.celery_app import configure_celery

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 for an unreachable database asks the client to wait
MAX_ERRORS = 20  # validation errors listed in one 422
MAX_INPUT_CHARS = 200  # of the offending input echoed per error
_short_repr = reprlib.Repr()  # keyword arguments only from Python 3.12
for _name, _limit in {
    "maxlevel": 2,
    "maxdict": 5,
    "maxlist": 5,
    "maxtuple": 5,
    "maxstring": 60,
    "maxother": 60,
}.items():
    setattr(_short_repr, _name, _limit)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for `settings` (read from the environment when not given)."""
    settings = settings or get_settings()
    engine = create_db_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="phononscreen",
        version="1",
        summary="Screen generated crystal structures for dynamical stability.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = create_session_factory(engine)
    app.state.store = ArtifactStore(settings.resolved_artifacts_dir)
    app.state.celery = configure_celery(
        broker_url=settings.resolved_broker_url,
        soft_time_limit_s=settings.task_soft_time_limit_s,
        time_limit_s=settings.task_time_limit_s,
    )
    app.include_router(api_router)
    app.include_router(health_router)
    app.include_router(web_router)  # the pages: shells that read and write through /api/v1
    app.include_router(optimade_router)  # /optimade/v1: the screened structures for OPTIMADE clients
    app.mount("/static/app", StaticFiles(directory=WEB / "static"), name="static")
    add_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    # added last = run first: a foreign Host is refused before anything else; CORS headers go on
    # every answer to an allowed origin, a 413 or 401 included, so a browser can read the error
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
        )
    if settings.trusted_host_list:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_host_list)
    return app


def add_error_handlers(app: FastAPI) -> None:
    """422 for bad requests (JSON-safe and short, whatever the input), 422 for a body that ended
    early, 503 with Retry-After while the database cannot be reached, OPTIMADE's errors as its
    error documents, 410 for a stored file that went missing from the artifact store."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _incomplete_body)
    app.add_exception_handler(OptimadeHTTPException, optimade_error)  # /optimade: JSON:API error documents
    app.add_exception_handler(ArtifactMissing, _artifact_missing)
    for error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(error, _database_unavailable)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    detail = [_json_safe_error(e) for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        detail.append(
            {"type": "too_many_errors", "loc": [], "msg": f"{len(errors) - MAX_ERRORS} more errors not shown"}
        )
    return JSONResponse({"detail": detail}, status_code=422)


async def _incomplete_body(_: Request, __: Exception) -> JSONResponse:
    message = "the request body ended before it was complete (shorter than its Content-Length)"
    return JSONResponse({"detail": {"code": "incomplete_body", "message": message}}, status_code=422)


async def _artifact_missing(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ArtifactMissing)
    logger.warning("artifact missing: %s", exc.relpath)
    message = "this file is no longer in the artifact store (deleted, or another volume mounted); screen again"
    return JSONResponse({"detail": {"code": "artifact_missing", "message": message}}, status_code=410)


async def _database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable: %s", exc)  # the URL and host stay in the log, not in the answer
    message = f"the database cannot be reached; retry in {RETRY_AFTER_S} s"
    return JSONResponse(
        {"detail": {"code": "database_unavailable", "message": message}},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _json_safe_error(error: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {
        "type": str(error.get("type", "")),
        "loc": [part if isinstance(part, int) else _shorten(str(part)) for part in error.get("loc", ())],
        "msg": _shorten(str(error.get("msg", "")), limit=2 * MAX_INPUT_CHARS),
    }
    if "input" in error:
        safe["input"] = _json_safe(error["input"])
    if error.get("ctx"):
        safe["ctx"] = {str(k): _json_safe(v) for k, v in error["ctx"].items()}
    return safe


def _json_safe(value: Any) -> Any:
    """`value` as JSON can carry it, at most MAX_INPUT_CHARS long: bytes and objects as a short repr."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else f"<an integer of {value.bit_length()} bits>"  # str() may refuse it
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _shorten(value)
    if isinstance(value, BaseException):
        return _shorten(str(value))
    if isinstance(value, bytes | bytearray):  # raw body bytes: JSON cannot carry them, and they may not be UTF-8
        return _shorten(repr(bytes(value[:MAX_INPUT_CHARS])))
    return _shorten(_short_repr.repr(value))  # containers, uploads: reprlib stops early, whatever the size


def _shorten(text: str, *, limit: int = MAX_INPUT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
