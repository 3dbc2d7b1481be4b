"""The FastAPI app factory: settings, database, artifact store and Celery client on app.state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import api_router
from app.api.health import router as health_router
from app.config import Settings, get_settings
from app.limits import BodySizeLimit
from models.artifacts import ArtifactStore
from models.session import create_db_engine, create_session_factory
from workers.celery_app import configure_celery


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
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    return app
