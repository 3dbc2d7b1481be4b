"""The database: declarative base, one module per table, sessions and data functions."""

from models.api_key import ApiKey
from models.base import NAMING_CONVENTION, Base
from models.batch import Batch
from models.candidate import Candidate
from models.generator import Generator
from models.screening import STATUSES, Screening
from models.source import Source, SourceContent, SourceFile
from models.verdict import Verdict
from models.worker import WorkerHeartbeat

__all__ = [
    "ApiKey",
    "Base",
    "NAMING_CONVENTION",
    "Batch",
    "Candidate",
    "Generator",
    "STATUSES",
    "Screening",
    "Source",
    "SourceContent",
    "SourceFile",
    "Verdict",
    "WorkerHeartbeat",
]
