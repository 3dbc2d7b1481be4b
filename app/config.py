"""The one settings object of a phononscreen process, read from the environment at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.screening.potentials.registry import AUTO_FALLBACK, AUTO_PREFERRED, POTENTIAL_NAMES
from workers.screening.protocols import PROTOCOLS


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("phononscreen"))


def _default_compile_cache() -> Path:
    # platformdirs honours $XDG_CACHE_HOME: ~/.cache/phononscreen/compiled by default
    return Path(platformdirs.user_cache_dir("phononscreen")) / "compiled"


def _env(name: str) -> dict:
    # the environment name is the alias; populate_by_name lets code and tests pass the field name
    return {"validation_alias": name}


class Settings(BaseSettings):
    """Every setting, with its environment variable name. Bad values stop the process at start."""

    # case_sensitive: otherwise the field `home` would also read $HOME
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True, case_sensitive=True)

    database_url: str = Field(
        "",
        **_env("DATABASE_URL"),
        description=(
            "SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host/db. Empty: SQLite under PHONONSCREEN_HOME."
        ),
    )
    broker_url: str = Field(
        "",
        **_env("CELERY_BROKER_URL"),
        description=(
            "Celery broker, e.g. redis://host:6379/0. Empty: kombu's SQLAlchemy transport on SQLite under "
            "PHONONSCREEN_HOME (no server needed)."
        ),
    )
    home: Path = Field(
        default_factory=_default_home,
        **_env("PHONONSCREEN_HOME"),
        description="Folder for the embedded database, broker and artifacts.",
    )
    artifacts_dir: Path | None = Field(
        None,
        **_env("PHONONSCREEN_ARTIFACTS_DIR"),
        description="Artifact store (band structures, CIFs, uploads). Default: HOME/artifacts.",
    )
    potential: str = Field(
        "auto",
        **_env("PHONONSCREEN_POTENTIAL"),
        description=f"Default potential for new batches: one of {', '.join(POTENTIAL_NAMES)} (auto: "
        f"{AUTO_PREFERRED} when its weights are on the machine, else {AUTO_FALLBACK} with a warning on every verdict).",
    )
    protocol: str = Field(
        "default",
        **_env("PHONONSCREEN_PROTOCOL"),
        description=f"Default protocol for new batches: one of {', '.join(PROTOCOLS)}.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", **_env("PHONONSCREEN_DEVICE"), description="Where workers evaluate the potential."
    )
    compile: Literal["auto", "on", "off"] = Field(
        "auto",
        **_env("PHONONSCREEN_COMPILE"),
        description=(
            "torch.compile of the potential in workers: auto = SevenNet on a CPU with a C++ compiler, kept only "
            "where it times faster than eager on the warm-up cell (benchmarks/compile_forces.py; compiled once per "
            "machine, ~2 min, and loaded by every later worker process in seconds from PHONONSCREEN_COMPILE_CACHE), "
            "on (compiled whatever it measures), off."
        ),
    )
    compile_cache: Path = Field(
        default_factory=_default_compile_cache,
        **_env("PHONONSCREEN_COMPILE_CACHE"),
        description="Where compiled potentials are kept for later processes (CLI and workers).",
    )
    model_memory_gb: float | None = Field(
        None,
        ge=0,
        **_env("PHONONSCREEN_MODEL_MEMORY_GB"),
        description="Memory one screening process may give a potential's call (GB); a cell whose call CHGNet "
        "estimates above it fails with that reason instead of running the machine out of memory. Default: 80 % of "
        "this machine's RAM split between the processes; 0: no limit.",
    )
    max_upload_bytes: int = Field(
        50_000_000,
        gt=0,
        **_env("PHONONSCREEN_MAX_UPLOAD_BYTES"),
        description="Largest request body the API reads (413 above it).",
    )
    max_atoms: int = Field(
        200, gt=0, le=5000, **_env("PHONONSCREEN_MAX_ATOMS"), description="Largest cell accepted, in atoms."
    )
    max_files: int = Field(
        1000,
        gt=0,
        le=100_000,
        **_env("PHONONSCREEN_MAX_FILES"),
        description="Most files (or JSON structures) in one request (413 above it).",
    )
    max_structures: int = Field(
        10_000,
        gt=0,
        **_env("PHONONSCREEN_MAX_STRUCTURES"),
        description="Most structures (and archive members) read from one request (413 above it).",
    )
    max_decompressed_bytes: int = Field(
        200_000_000,
        gt=0,
        **_env("PHONONSCREEN_MAX_DECOMPRESSED_BYTES"),
        description="Most bytes one request's files may amount to once inflated: gzip, archives and .pt "
        "records included (413 above it).",
    )
    parse_timeout_s: float = Field(
        60,
        gt=0,
        **_env("PHONONSCREEN_PARSE_TIMEOUT_S"),
        description="Longest the API spends reading one request's structures (413 above it); reading runs "
        "in separate processes, off the event loop.",
    )
    parse_workers: int = Field(
        2,
        gt=0,
        le=64,
        **_env("PHONONSCREEN_PARSE_WORKERS"),
        description="Processes of the API that read uploads (each request is read by one of them).",
    )
    screen_chunk: int = Field(
        4,
        gt=0,
        le=1000,
        **_env("PHONONSCREEN_SCREEN_CHUNK"),
        description="Screenings per worker task (one core call per task).",
    )
    task_soft_time_limit_s: int = Field(
        6 * 3600,
        gt=0,
        **_env("PHONONSCREEN_TASK_SOFT_TIME_LIMIT_S"),
        description="Soft limit of one screening task; its screenings are marked failed.",
    )
    task_time_limit_s: int = Field(
        6 * 3600 + 600,
        gt=0,
        **_env("PHONONSCREEN_TASK_TIME_LIMIT_S"),
        description="Hard limit of one screening task (the worker child is killed).",
    )
    lease_s: int = Field(
        600,
        ge=3,
        **_env("PHONONSCREEN_LEASE_S"),
        description="Lease of a running screening, renewed by its worker every third of it; past it the "
        "reconciler gives the screening to another worker.",
    )
    reconcile_every_s: int = Field(
        60,
        gt=0,
        **_env("PHONONSCREEN_RECONCILE_EVERY_S"),
        description="How often the reconciler runs (`phononscreen beat`, or a thread of `serve`).",
    )
    heartbeat_s: float = Field(
        10,
        gt=0,
        **_env("PHONONSCREEN_HEARTBEAT_S"),
        description="How often each worker records in the database that it is alive; /ready counts a worker "
        "silent for three of these as gone (give the API and the workers the same value).",
    )
    keep_force_constants: bool = Field(
        False,
        **_env("PHONONSCREEN_KEEP_FORCE_CONSTANTS"),
        description="Workers store each screening's force constants (phonopy_params.yaml.xz) in the artifact store.",
    )
    worker_concurrency: int | None = Field(
        None,
        gt=0,
        **_env("PHONONSCREEN_WORKER_CONCURRENCY"),
        description="Worker processes per `phononscreen worker`; default: the "
        "measured layout, one 1-thread process per core on a CPU, one per GPU.",
    )
    api_host: str = Field("127.0.0.1", **_env("PHONONSCREEN_API_HOST"), description="API bind address.")
    api_port: int = Field(8000, gt=0, lt=65536, **_env("PHONONSCREEN_API_PORT"), description="API port.")
    require_keys: bool = Field(
        False,
        **_env("PHONONSCREEN_REQUIRE_KEYS"),
        description="Every write (POST/PUT/PATCH/DELETE under /api/v1) needs a valid API key (`phononscreen keys`).",
    )
    private_reads: bool = Field(
        False,
        **_env("PHONONSCREEN_PRIVATE_READS"),
        description="Reads under /api/v1 need a key too (and so do writes, whatever PHONONSCREEN_REQUIRE_KEYS says).",
    )
    rate_limit_per_min: int = Field(
        600,
        ge=0,
        **_env("PHONONSCREEN_RATE_LIMIT_PER_MIN"),
        description="Requests per minute per API key (429 above it); 0 = no limit.",
    )
    daily_structure_quota: int = Field(
        0,
        ge=0,
        **_env("PHONONSCREEN_DAILY_STRUCTURE_QUOTA"),
        description="Structures accepted per API key per UTC day (429 above it); 0 = no quota.",
    )
    cors_origins: str = Field(
        "",
        **_env("PHONONSCREEN_CORS_ORIGINS"),
        description="Comma-separated origins browsers may call the API from; empty: no CORS headers.",
    )
    trusted_hosts: str = Field(
        "",
        **_env("PHONONSCREEN_TRUSTED_HOSTS"),
        description="Comma-separated Host header values the API answers (400 otherwise); empty: no check.",
    )
    source_roots: str = Field(
        "",
        **_env("PHONONSCREEN_SOURCE_ROOTS"),
        description="Comma-separated folders under which watched sources may lie (422 elsewhere); empty: any "
        "folder this machine's service can read.",
    )
    source_interval_s: float = Field(
        300,
        ge=5,
        **_env("PHONONSCREEN_SOURCE_INTERVAL_S"),
        description="How often a watched source is scanned when it gives neither interval_s nor cron. A file "
        "is read once its size and mtime held still between two scans.",
    )

    @field_validator("potential")
    @classmethod
    def _known_potential(cls, value: str) -> str:
        if value not in POTENTIAL_NAMES:
            raise ValueError(f"unknown potential {value!r}; choose one of {', '.join(POTENTIAL_NAMES)}")
        return value

    @field_validator("protocol")
    @classmethod
    def _known_protocol(cls, value: str) -> str:
        if value not in PROTOCOLS:
            raise ValueError(f"unknown protocol {value!r}; choose one of {', '.join(PROTOCOLS)}")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if value and not value.startswith(("postgresql", "sqlite")):
            raise ValueError("DATABASE_URL must be a postgresql+psycopg:// or sqlite:/// URL")
        return value

    @model_validator(mode="after")
    def _limits_ordered(self) -> Settings:
        if self.task_time_limit_s <= self.task_soft_time_limit_s:
            raise ValueError("PHONONSCREEN_TASK_TIME_LIMIT_S must exceed PHONONSCREEN_TASK_SOFT_TIME_LIMIT_S")
        return self

    @property
    def writes_need_key(self) -> bool:
        return self.require_keys or self.private_reads

    @property
    def cors_origin_list(self) -> list[str]:
        return _split_list(self.cors_origins)

    @property
    def trusted_host_list(self) -> list[str]:
        return _split_list(self.trusted_hosts)

    @property
    def source_root_list(self) -> list[Path]:
        return [Path(p).expanduser().resolve() for p in _split_list(self.source_roots)]

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'phononscreen.sqlite'}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.sqlite'}"

    @property
    def resolved_artifacts_dir(self) -> Path:
        return self.artifacts_dir or self.home / "artifacts"

    @classmethod
    def env_names(cls) -> set[str]:
        """Every environment variable this object reads."""
        return {str(field.validation_alias) for field in cls.model_fields.values()}


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def get_settings() -> Settings:
    """Read the environment once; raises pydantic.ValidationError naming every bad value."""
    return Settings()
