"""Service commands: serve (embedded), api, worker, beat, db upgrade/downgrade."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.commands import settings_or_fail
from app.supervisor import WorkerSupervisor, start_worker_process

if TYPE_CHECKING:
    from celery import Celery
    from celery.beat import EmbeddedService

    from app.config import Settings


@click.command()
@click.option("--port", type=int, default=None, help="API port [PHONONSCREEN_API_PORT, 8000].")
@click.option("--host", default=None, help="Bind address [PHONONSCREEN_API_HOST, 127.0.0.1].")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder [PHONONSCREEN_HOME, the user data directory].",
)
@click.option("--insecure", is_flag=True, help="Serve a non-loopback address without API keys (anyone can submit).")
def serve(port: int | None, host: str | None, home: Path | None, insecure: bool) -> None:
    """Run everything on this machine: SQLite, a serverless broker, one worker, the reconciler, the
    watched sources' scheduler and the API.

    Data (database, broker, artifacts) is kept under PHONONSCREEN_HOME. Set DATABASE_URL and
    CELERY_BROKER_URL to use Postgres and Redis instead. Stop with Ctrl-C. Bound to an address
    other than loopback it needs PHONONSCREEN_REQUIRE_KEYS=true (or --insecure).
    """
    import uvicorn

    from app.main import create_app
    from migrations import upgrade_database

    if home is not None:
        os.environ["PHONONSCREEN_HOME"] = str(home.resolve())
    settings = settings_or_fail()
    host, port = host or settings.api_host, port or settings.api_port
    check_exposure(settings, host=host, port=port, insecure=insecure)  # before anything starts
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)
    click.echo(f"phononscreen: data in {settings.home}")
    # a worker that dies (killed, out of memory) is replaced; its screenings come back through the reconciler
    worker = WorkerSupervisor(lambda: start_worker_process(queues="screen,default", concurrency=1))
    worker.start()
    stop_reconciler = _start_reconciler(settings)
    scheduler = _start_scheduler(settings)
    # uvicorn re-raises SIGTERM after its graceful shutdown; without a handler the process would
    # die there and orphan the worker, so turn it into SystemExit and let `finally` stop the worker
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(create_app(settings), host=host, port=port)
    finally:
        scheduler.stop()
        stop_reconciler.set()
        worker.stop()


def _start_reconciler(settings: Settings) -> threading.Event:
    """The reconciler as a thread of this process (what `phononscreen beat` schedules in production)."""
    from workers.celery_app import configure_celery
    from workers.reconcile import start_reconciler_thread
    from workers.runtime import WorkerConfig, WorkerContext

    context = WorkerContext(
        WorkerConfig(database_url=settings.resolved_database_url, artifacts_dir=settings.resolved_artifacts_dir)
    )
    celery = configure_celery(
        broker_url=settings.resolved_broker_url,
        soft_time_limit_s=settings.task_soft_time_limit_s,
        time_limit_s=settings.task_time_limit_s,
        schedule_url=settings.resolved_database_url,  # for the scheduler thread (_start_scheduler)
    )
    return start_reconciler_thread(
        context.session,
        celery=celery,
        lease_s=settings.lease_s,
        reconcile_every_s=settings.reconcile_every_s,
        chunk=settings.screen_chunk,
    )


def _start_scheduler(settings: Settings) -> EmbeddedService:
    """Celery beat as a thread of this process, sending the watched sources' scans on their
    schedules (what `phononscreen beat` does in production); the reconciler runs in its own thread."""
    from celery.beat import EmbeddedService

    from workers.celery_app import SCHEDULER, celery_app

    _sync_source_schedules(settings)
    # configured by _start_reconciler (schedule_url); the reconciler has its own thread here, so
    # beat sends only what the database holds
    celery_app.conf.beat_schedule = {}
    service = EmbeddedService(celery_app, thread=True, scheduler_cls=SCHEDULER)
    service.start()
    return service


def check_exposure(settings: Settings, *, host: str, port: int, insecure: bool) -> None:
    """Say who may submit to the API about to listen on host:port; refuse (ClickException) an
    address other than loopback without API keys, unless `insecure`."""
    from app.security import is_loopback

    address = f"{host}:{port}"
    if settings.writes_need_key:
        reads = "reads and writes" if settings.private_reads else "writes"
        click.echo(f"API keys required for {reads} on {address} (create one: phononscreen keys create NAME)")
    elif is_loopback(host):
        click.echo(f"no API keys required: anyone who can reach {address} can submit")
    elif insecure:
        click.echo(f"WARNING: no API keys required (--insecure): anyone who can reach {address} can submit", err=True)
    else:
        raise click.ClickException(
            f"refusing to listen on {address} without API keys: anyone who can reach it could submit. "
            "Set PHONONSCREEN_REQUIRE_KEYS=true (and create keys: phononscreen keys create NAME), "
            "bind 127.0.0.1, or pass --insecure."
        )


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@click.command()
@click.option("--port", type=int, default=None, help="[PHONONSCREEN_API_PORT, 8000]")
@click.option("--host", default=None, help="[PHONONSCREEN_API_HOST, 127.0.0.1]")
@click.option("--workers", type=int, default=1, show_default=True, help="Uvicorn worker processes.")
@click.option("--insecure", is_flag=True, help="Serve a non-loopback address without API keys (anyone can submit).")
def api(port: int | None, host: str | None, workers: int, insecure: bool) -> None:
    """Run the HTTP API only (the database must be migrated: `phononscreen db upgrade`).

    Bound to an address other than loopback it needs PHONONSCREEN_REQUIRE_KEYS=true (or --insecure).
    """
    import uvicorn

    settings = settings_or_fail()
    host, port = host or settings.api_host, port or settings.api_port
    check_exposure(settings, host=host, port=port, insecure=insecure)  # before anything starts
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers)


@click.command()
@click.option(
    "--queues",
    "-Q",
    default="screen",
    show_default=True,
    help="Comma-separated: `screen` (heavy, GPU workers) and/or `default` (bookkeeping, which "
    "`phononscreen beat` serves itself).",
)
@click.option(
    "--concurrency",
    "-c",
    type=int,
    default=None,
    help="Worker processes [PHONONSCREEN_WORKER_CONCURRENCY; default: one 1-thread process per core on a CPU, "
    "one per GPU].",
)
@click.option(
    "--pool",
    "-P",
    type=click.Choice(["prefork", "solo", "threads"]),
    default="prefork",
    show_default=True,
    help="prefork enforces the hard time limit; solo runs in this process.",
)
@click.option("--hostname", "-n", default=None, help="Celery node name (default phononscreen-PID@host).")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def worker(queues: str, concurrency: int | None, pool: str, hostname: str | None, loglevel: str) -> None:
    """Run a Celery worker that screens candidates (loads the potential once per process)."""
    settings = settings_or_fail()
    from workers.screening.parallel import Layout

    layout = Layout.for_device(_device(settings.device))
    processes = concurrency or settings.worker_concurrency or layout.processes
    app = _configure_worker_process(settings, processes=processes)
    # torch reads these when it is first imported, in the pool's children: set them before.
    threads = (
        layout.threads_per_process if processes == layout.processes else max(1, (os.cpu_count() or 1) // processes)
    )
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    click.echo(f"worker layout: {processes} process(es) x {os.environ['OMP_NUM_THREADS']} torch thread(s)", err=True)
    app.worker_main(
        [
            "worker",
            "--queues",
            queues,
            "--concurrency",
            str(processes),
            "--pool",
            pool,
            "--hostname",
            hostname or f"phononscreen-{os.getpid()}@%h",
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )


@click.command()
@click.option("--loglevel", "-l", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the bookkeeper (exactly one): Celery beat, sending the reconciler every
    PHONONSCREEN_RECONCILE_EVERY_S and each watched source's scan on its schedule, inside a
    one-process worker of the `default` queue that runs them and the batches' bookkeeping.

    The schedule is kept in the database (sqlalchemy-celery-beat), where the API writes the
    sources' schedules: a restarted beat carries on from it. The reconciler takes back screenings
    whose worker died (or fails them after 3 attempts), re-sends lost messages and stamps ended
    batches. It has a worker of its own: on the screening workers it would wait behind hours-long
    tasks while their every process is busy.
    """
    settings = settings_or_fail()
    app = _configure_worker_process(settings, schedule=True)
    _sync_source_schedules(settings)
    app.worker_main(
        [
            "worker",
            "--queues",
            "default",
            "--pool",
            "solo",
            "--beat",
            "--hostname",
            f"phononscreen-beat-{os.getpid()}@%h",
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _sync_source_schedules(settings: Settings) -> None:
    """The watched sources' periodic tasks made to match the sources table, before beat reads them."""
    from models.session import create_db_engine, create_session_factory
    from workers.schedule import sync_source_schedules

    engine = create_db_engine(settings.resolved_database_url)
    try:
        with create_session_factory(engine)() as session:
            sync_source_schedules(session)
    finally:
        engine.dispose()


def _configure_worker_process(settings: Settings, *, processes: int = 1, schedule: bool = False) -> Celery:
    """The worker runtime (database, artifacts, device, leases, read limits) and the Celery app of a
    worker process (`schedule`: one that runs beat too)."""
    from workers.celery_app import configure_celery
    from workers.runtime import WorkerConfig, configure_worker
    from workers.screening.potentials.memory import budget_mib

    configure_worker(
        WorkerConfig(
            database_url=settings.resolved_database_url,
            artifacts_dir=settings.resolved_artifacts_dir,
            device=settings.device,
            compile=settings.compile,
            compile_cache=settings.compile_cache,
            memory_budget_mib=budget_mib(settings.model_memory_gb, processes=processes),
            keep_force_constants=settings.keep_force_constants,
            lease_s=settings.lease_s,
            reconcile_every_s=settings.reconcile_every_s,
            screen_chunk=settings.screen_chunk,
            heartbeat_s=settings.heartbeat_s,
            max_atoms=settings.max_atoms,
            max_structures=settings.max_structures,
            max_decompressed_bytes=settings.max_decompressed_bytes,
        )
    )
    return configure_celery(
        broker_url=settings.resolved_broker_url,
        soft_time_limit_s=settings.task_soft_time_limit_s,
        time_limit_s=settings.task_time_limit_s,
        reconcile_every_s=settings.reconcile_every_s,
        schedule_url=settings.resolved_database_url if schedule else None,
    )


def _device(device: str) -> str:
    """'auto' without importing torch: a visible NVIDIA device means cuda."""
    if device != "auto":
        return device
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    return "cuda" if os.path.exists("/dev/nvidia0") else "cpu"


@click.group()
def db() -> None:
    """Database schema: create, upgrade or downgrade it (Postgres or SQLite)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or upgrade the database at DATABASE_URL (or the embedded SQLite file)."""
    from migrations import upgrade_database

    settings = settings_or_fail()
    upgrade_database(settings.resolved_database_url, revision=revision)
    click.echo(f"database at {_redact(settings.resolved_database_url)} is at {revision}")


@db.command("downgrade")
@click.option("--revision", required=True, help="Target revision, e.g. -1 or base (drops everything).")
def db_downgrade(revision: str) -> None:
    """Downgrade the database schema to REVISION."""
    from migrations import downgrade_database

    settings = settings_or_fail()
    downgrade_database(settings.resolved_database_url, revision=revision)
    click.echo(f"database at {_redact(settings.resolved_database_url)} downgraded to {revision}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


__all__ = ["api", "beat", "db", "serve", "worker"]
