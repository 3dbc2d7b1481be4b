"""OPTIMADE v1 over the screened candidates: each one with a verdict is a structure resource,
searched with OPTIMADE filters translated to SQL."""

from app.optimade.responses import optimade_error
from app.optimade.routes import router

__all__ = ["optimade_error", "router"]
