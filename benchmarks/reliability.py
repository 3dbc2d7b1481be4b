"""Reliability benchmark: faults injected into a running Postgres + Redis stack, hostile inputs sent to
its API, and a bounded load run on loopback.

    python benchmarks/reliability.py [--scenario faults,hostile,load] [--clients 16 --seconds 60]

Each scenario starts its own stack (a fresh Postgres database, a flushed Redis database, `phononscreen
db upgrade`, then `phononscreen api`, `beat` and `worker` as separate processes) and prints one
summary line; the exit status is 1 when a verdict was lost or doubled or a 5xx was seen.

- faults: a batch of 20 distinct small cells (SevenNet-0, `default` protocol, 8 s leases) while a
  pool child is SIGKILLed, then the worker's whole process group (a new worker is started), then
  every Postgres connection of the stack is terminated, then the broker's Redis database is
  flushed; every screening must end with exactly one verdict.
- hostile: malformed and oversized requests, bombs, traversal and a generator race
  (`reliability_hostile.py`); each answer's status is recorded, and /health is timed meanwhile.
- load: N clients for T seconds of uploads (deduplicated after the first of each structure) and reads.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import math
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

CLI = [sys.executable, "-m", "app.cli"]
PG_ADMIN_URL = os.environ.get("PHONONSCREEN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# never db 0 (production) nor 15 (the service tests'); the whole database is flushed
REDIS_URL = os.environ.get("PHONONSCREEN_RELIABILITY_REDIS", "redis://127.0.0.1:6379/14")
SCENARIOS = ("faults", "hostile", "load")
# uvicorn's access log: `127.0.0.1:5000 - "GET /health HTTP/1.1" 200 OK`
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
# celery's log of a finished screening task: `... succeeded in 3.1s: {'claimed': 2, 'saved': 2}`
RECONCILED = re.compile(r"^\[([\d-]+ [\d:,]+): [^\]]*\] reconciled: (\{.*\})$", re.M)
TASK_DONE = re.compile(r"succeeded in [\d.]+s: \{'claimed': (\d+), 'saved': (\d+)\}")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the stack ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """api + beat + workers as separate processes on a fresh Postgres database and a Redis database.

    Every process is started in its own session (process group), so a kill can take a worker's
    pool children with it, and is stopped with SIGTERM, then SIGKILL of its group.
    """

    def __init__(
        self,
        work: Path,
        *,
        redis_url: str = REDIS_URL,
        pg_admin_url: str = PG_ADMIN_URL,
        lease_s: int = 8,
        reconcile_every_s: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.work = work
        self.redis_url = redis_url
        self.pg_admin_url = pg_admin_url
        self.db_name = f"phononscreen_reliability_{secrets.token_hex(4)}"
        base = pg_admin_url.rsplit("/", 1)[0]
        self.pg_url = f"{base}/{self.db_name}"  # psycopg's
        self.db_url = self.pg_url.replace("postgresql://", "postgresql+psycopg://", 1)  # SQLAlchemy's
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PHONONSCREEN_") and k not in ("DATABASE_URL", "CELERY_BROKER_URL")
        }
        self.env.update(
            DATABASE_URL=self.db_url,
            CELERY_BROKER_URL=redis_url,
            PHONONSCREEN_HOME=str(work / "home"),
            PHONONSCREEN_ARTIFACTS_DIR=str(work / "artifacts"),
            PHONONSCREEN_POTENTIAL="sevennet-0",
            PHONONSCREEN_PROTOCOL="default",
            PHONONSCREEN_COMPILE="off",  # the faults are the subject, not the model's speed
            PHONONSCREEN_SCREEN_CHUNK="2",
            PHONONSCREEN_LEASE_S=str(lease_s),
            PHONONSCREEN_RECONCILE_EVERY_S=str(reconcile_every_s),
            OPENBLAS_NUM_THREADS="1",
            **(env or {}),
        )
        self._workers = 0

    # -- life cycle

    def __enter__(self) -> Stack:
        import psycopg

        self.work.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.flush_broker()
        try:
            subprocess.run(
                [*CLI, "db", "upgrade"], env=self.env, cwd=ROOT, check=True, capture_output=True, timeout=120
            )
            self.start("api", [*CLI, "api", "--port", str(self.port)])
            self.wait_api()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        import psycopg

        for role in list(self.processes):
            self.stop(role)
        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        self.flush_broker()

    def start(self, role: str, args: list[str]) -> subprocess.Popen:
        path = self.work / f"{role}.log"
        with path.open("ab") as out:
            process = subprocess.Popen(
                args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes[role], self.logs[role] = process, path
        return process

    def stop(self, role: str, *, timeout_s: float = 20) -> None:
        from app.supervisor import stop_process

        process = self.processes.pop(role)
        stop_process(process, timeout_s=timeout_s)  # SIGTERM, then SIGKILL of its group
        _kill_group(process.pid)  # pool children a warm shutdown left behind

    def start_beat(self) -> None:
        self.start("beat", [*CLI, "beat"])

    def start_worker(self, *, concurrency: int = 2, timeout_s: float = 120) -> str:
        """A new `phononscreen worker`; returns its role name once its pool is up and consuming."""
        self._workers += 1
        role = f"worker{self._workers}"
        process = self.start(role, [*CLI, "worker", "--concurrency", str(concurrency)])
        deadline = time.monotonic() + timeout_s
        while " ready." not in self.logs[role].read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{role} did not start:\n{self.tail(role)}")
            time.sleep(0.5)
        return role

    def wait_api(self, timeout_s: float = 120) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.processes["api"].poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the API did not come up:\n{self.tail('api')}")

    def tail(self, role: str, chars: int = 3000) -> str:
        return self.logs[role].read_text(errors="replace")[-chars:]

    # -- faults

    def kill_pool_child(self, role: str) -> int:
        """SIGKILL the busiest pool child of a worker (its main process forks a new one); returns its pid."""
        import psutil

        children = psutil.Process(self.processes[role].pid).children()
        if not children:
            raise RuntimeError(f"{role} has no pool child")
        for child in children:
            child.cpu_percent(None)
        time.sleep(0.5)
        busiest = max(children, key=lambda c: c.cpu_percent(None))
        busiest.send_signal(signal.SIGKILL)
        return int(busiest.pid)

    def kill_worker(self, role: str) -> int:
        """SIGKILL a worker's whole process group (main process and pool children); returns how many died."""
        import psutil

        process = self.processes.pop(role)
        members = [process.pid] + [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        time.sleep(0.5)
        alive = [pid for pid in members if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        if alive:
            raise RuntimeError(f"processes of {role} survived SIGKILL of their group: {alive}")
        return len(members)

    def terminate_db_connections(self) -> int:
        """pg_terminate_backend of every connection to the stack's database; returns how many."""
        import psycopg

        with psycopg.connect(self.pg_admin_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.db_name,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def terminate_db_connections_burst(self, *, times: int = 5, every_s: float = 1.0) -> str:
        """`times` rounds of terminate_db_connections, `every_s` apart: later rounds catch the
        connections the first one made the processes open again, some of them mid-transaction."""
        killed = []
        for i in range(times):
            killed.append(self.terminate_db_connections())
            if i < times - 1:
                time.sleep(every_s)
        return f"{sum(killed)} connections in {times} rounds {killed}"

    def flush_broker(self) -> int:
        """FLUSHDB of the broker's Redis database; returns the keys it held."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            held = int(client.dbsize())
            client.flushdb()
            return held
        finally:
            client.close()

    def queued_messages(self, queue: str = "screen") -> int:
        """Messages waiting in a queue of the broker (its priority lists included)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return sum(
                int(client.llen(key)) for key in client.scan_iter(match=f"{queue}*") if client.type(key) == b"list"
            )
        finally:
            client.close()

    # -- reading the outcome

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.pg_url, connect_timeout=10) as conn:
            return conn.execute(query, params).fetchall()

    def server_5xx(self) -> list[str]:
        """Lines of the API's access log with a 5xx status, and its tracebacks' last lines."""
        text = self.logs["api"].read_text(errors="replace")
        bad = [m.group(0) for m in ACCESS_LINE.finditer(text) if m.group("status").startswith("5")]
        lines = text.splitlines()
        bad += [lines[i - 1] if i else "Traceback" for i, line in enumerate(lines) if line.startswith("Traceback")]
        return bad

    def task_counts(self) -> tuple[int, int]:
        """(claimed, saved) summed over the screening tasks that finished, from every worker's log."""
        claimed = saved = 0
        for role, path in self.logs.items():
            if role.startswith("worker"):
                for m in TASK_DONE.finditer(path.read_text(errors="replace")):
                    claimed, saved = claimed + int(m.group(1)), saved + int(m.group(2))
        return claimed, saved


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def work_dir(path: Path | None, *, keep: bool) -> Iterator[Path]:
    """`path`, or a temporary folder removed afterwards unless `keep`."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    folder = Path(tempfile.mkdtemp(prefix="phononscreen-reliability-"))
    try:
        yield folder
    finally:
        if keep:
            log(f"logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


# --- faults ------------------------------------------------------------------------------------

# 20 binary and elemental cubic crystals, 1-2 atoms in the primitive cell, all compositions
# distinct (so the dedup links none); lattice constants near experiment (Å)
PROTOTYPES = {
    "rocksalt": ("Fm-3m", [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "CsCl": ("Pm-3m", [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "zincblende": ("F-43m", [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "fcc": ("Fm-3m", [[0, 0, 0]]),
    "bcc": ("Im-3m", [[0, 0, 0]]),
    "diamond": ("Fd-3m", [[0, 0, 0]]),
}
FAULT_CELLS = [
    ("rocksalt", ("Na", "Cl"), 5.64), ("rocksalt", ("K", "Cl"), 6.29), ("rocksalt", ("Mg", "O"), 4.21),
    ("rocksalt", ("Li", "F"), 4.03), ("rocksalt", ("Na", "F"), 4.63), ("rocksalt", ("Ca", "O"), 4.81),
    ("rocksalt", ("K", "Br"), 6.60), ("rocksalt", ("Li", "Cl"), 5.13), ("CsCl", ("Cs", "Cl"), 4.12),
    ("CsCl", ("Cs", "Br"), 4.29), ("CsCl", ("Ni", "Al"), 2.88), ("zincblende", ("Ga", "As"), 5.65),
    ("zincblende", ("Zn", "S"), 5.41), ("zincblende", ("Al", "P"), 5.46), ("fcc", ("Cu",), 3.61),
    ("fcc", ("Ag",), 4.09), ("fcc", ("Al",), 4.04), ("bcc", ("W",), 3.16), ("bcc", ("Mo",), 3.15),
    ("diamond", ("Si",), 5.43),
]  # fmt: skip


def fault_structures(n: int = 20) -> list[tuple[str, str]]:
    """(name, CIF) of the first `n` cells of FAULT_CELLS, primitive, built with pymatgen."""
    from pymatgen.core import Lattice, Structure

    out = []
    for kind, elements, a in FAULT_CELLS[:n]:
        group, coords = PROTOTYPES[kind]
        cell = Structure.from_spacegroup(group, Lattice.cubic(a), list(elements), coords).get_primitive_structure()
        out.append((f"{''.join(elements)}-{kind}", cell.to(fmt="cif")))
    return out


@dataclass
class Fault:
    name: str
    after_done: int  # fired once this many screenings of the batch have ended (and a worker is busy)
    inject: Callable[[], str]  # does it; returns what it did
    needs_queued: bool = False  # wait until messages wait in the broker's queue (so the fault loses some)
    fired_at_s: float | None = None
    detail: str = ""
    progress: dict[str, int] = field(default_factory=dict)


def run_faults(
    stack: Stack, *, n: int = 20, concurrency: int = 2, timeout_s: float = 900, poll_s: float = 0.5
) -> dict[str, Any]:
    """Submit `n` distinct cells, inject the four faults in turn while they are screened, wait until
    every screening has ended (or `timeout_s`), and count verdicts per screening and per candidate."""
    import httpx

    stack.start_beat()
    worker = stack.start_worker(concurrency=concurrency)
    structures = fault_structures(n)
    body = {
        "generator": "reliability",
        "protocol": "default",
        "potential": "sevennet-0",
        "structures": [{"name": name, "cif": cif} for name, cif in structures],
    }
    polls: Counter[int] = Counter()
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        start, wall_start = time.monotonic(), time.time()
        answer = client.post("/api/v1/batches", json=body)
        if answer.status_code != 202:
            raise RuntimeError(f"the batch was refused: {answer.status_code} {answer.text[:2000]}")
        created = answer.json()
        batch_id = created["id"]
        log(f"faults: batch {batch_id}: {created['accepted']} accepted, {created['duplicates']} duplicates")

        def flush() -> str:
            waiting = stack.queued_messages()
            return f"{stack.flush_broker()} keys, {waiting} screening message(s) waiting in the queue"

        def restart_worker() -> str:
            nonlocal worker
            died = stack.kill_worker(worker)
            worker = stack.start_worker(concurrency=concurrency)
            return f"{died} processes killed, {worker} started"

        faults = [
            Fault("SIGKILL pool child", 0, lambda: f"pid {stack.kill_pool_child(worker)}"),
            Fault("SIGKILL worker process group", n // 5, restart_worker),
            Fault("pg_terminate_backend", 3 * n // 10, stack.terminate_db_connections_burst),
            Fault("Redis FLUSHDB", 2 * n // 5, flush, needs_queued=True),
        ]
        pending = list(faults)
        last_fault = first_running = None
        while True:
            now = time.monotonic()
            progress = _progress(stack, batch_id)
            try:
                polls[client.get(f"/api/v1/batches/{batch_id}", timeout=10).status_code] += 1
            except httpx.HTTPError:
                polls[0] += 1
            if progress["running"] and first_running is None:
                first_running = now
            due = pending and _due(pending[0], progress, now=now, first_running=first_running, last_fault=last_fault)
            if due and pending[0].needs_queued and progress["ended"] < 4 * n // 5:
                due = progress["queued"] > 0 and stack.queued_messages() > 0
            if due:
                fault = pending.pop(0)
                fault.fired_at_s, fault.progress = round(now - start, 1), progress
                fault.detail = fault.inject()
                last_fault = time.monotonic()
                log(f"faults: {fault.name} at {fault.fired_at_s} s ({fault.detail}); progress {progress}")
            if progress["queued"] + progress["running"] == 0:  # faults not fired by now never will be
                break
            if now - start > timeout_s:
                log(f"faults: timed out after {timeout_s:.0f} s; progress {progress}")
                break
            time.sleep(poll_s)
        wall_s = time.monotonic() - start
    report = count_verdicts(stack, batch_id=batch_id, expected=n)
    claimed, saved = stack.task_counts()
    report.update(
        accepted=created["accepted"],
        dedup_links=created["duplicates"],
        faults=[{"name": f.name, "at_s": f.fired_at_s, "detail": f.detail, "progress": f.progress} for f in faults],
        faults_injected=sum(f.fired_at_s is not None for f in faults),
        wall_s=round(wall_s, 1),
        api_polls=dict(polls),
        api_5xx=sum(v for k, v in polls.items() if k >= 500),
        tasks_claimed=claimed,
        tasks_saved=saved,
        server_5xx=stack.server_5xx(),
        reconciler=reconciler_passes(stack, since=wall_start),
    )
    # a screening a finished task claimed whose verdict another had saved: the same candidate screened twice
    report["screened_twice"] = claimed - saved
    report["duplicated"] += report["screened_twice"]
    return report


def _due(
    fault: Fault, progress: dict[str, int], *, now: float, first_running: float | None, last_fault: float | None
) -> bool:
    if last_fault is not None and now - last_fault < 5:  # let each fault's effect show before the next
        return False
    if fault.after_done == 0:  # the first fault: well inside the first screenings (model loaded, relaxing)
        return first_running is not None and now - first_running > 4 and progress["running"] > 0
    return progress["ended"] >= fault.after_done and progress["running"] > 0


def reconciler_passes(stack: Stack, *, since: float) -> list[dict[str, Any]]:
    """The reconciler's passes that changed something, from the logs of the processes that run
    Celery tasks (the `screen` workers and `phononscreen beat`, whose embedded worker runs the
    reconciler): seconds after `since` (a wall-clock time) and what they did."""
    from datetime import datetime

    passes = []
    for role, path in stack.logs.items():
        if role.startswith("worker") or role == "beat":
            for m in RECONCILED.finditer(path.read_text(errors="replace")):
                at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - since
                passes.append({"at_s": round(at, 1), **json.loads(m.group(2).replace("'", '"'))})
    return sorted(passes, key=lambda p: p["at_s"])


def _progress(stack: Stack, batch_id: int) -> dict[str, int]:
    rows = dict(stack.sql("SELECT status, count(*) FROM screenings WHERE batch_id = %s GROUP BY status", (batch_id,)))
    counts = {s: int(rows.get(s, 0)) for s in ("queued", "running", "done", "failed")}
    counts["ended"] = counts["done"] + counts["failed"]
    return counts


def count_verdicts(stack: Stack, *, batch_id: int, expected: int) -> dict[str, Any]:
    """Verdict rows per screening and per candidate of the batch: obtained, duplicated, lost."""
    per_screening = stack.sql(
        "SELECT s.id, s.status, s.attempts, count(v.id) FROM screenings s "
        "LEFT JOIN verdicts v ON v.screening_id = s.id WHERE s.batch_id = %s GROUP BY s.id ORDER BY s.id",
        (batch_id,),
    )
    per_candidate = stack.sql(
        "SELECT c.id, count(v.id) FROM candidates c LEFT JOIN verdicts v ON v.candidate_id = c.id "
        "WHERE c.batch_id = %s GROUP BY c.id",
        (batch_id,),
    )
    verdicts = Counter(
        v for (v,) in stack.sql("SELECT v.verdict FROM verdicts v JOIN screenings s ON s.id = v.screening_id "
                                "WHERE s.batch_id = %s", (batch_id,))
    )  # fmt: skip
    obtained = sum(1 for *_, k in per_screening if k >= 1)
    extra = sum(k - 1 for *_, k in per_screening if k > 1) + sum(k - 1 for _, k in per_candidate if k > 1)
    # still queued or running when the run stopped (its timeout): late, not lost
    unfinished = sum(1 for _, status, _, k in per_screening if k == 0 and status in ("queued", "running"))
    return {
        "batch_id": batch_id,
        "expected": expected,
        "screenings": len(per_screening),
        "obtained": obtained,
        "duplicated": extra,
        "lost": expected - obtained - unfinished,
        "unfinished": unfinished,
        "statuses": dict(Counter(status for _, status, _, _ in per_screening)),
        "attempts": dict(Counter(attempts for _, _, attempts, _ in per_screening)),
        "verdicts": dict(verdicts),
        "not_done": [{"id": i, "status": s, "attempts": a} for i, s, a, k in per_screening if k == 0],
    }


def faults_line(r: dict[str, Any]) -> str:
    return (
        f"faults: faults={r['faults_injected']} expected={r['expected']} obtained={r['obtained']} "
        f"duplicated={r['duplicated']} lost={r['lost']} 5xx={r['api_5xx'] + len(r['server_5xx'])} "
        f"time={r['wall_s']:.0f}s" + (f" unfinished={r['unfinished']} (timed out)" if r["unfinished"] else "")
    )


# --- load --------------------------------------------------------------------------------------

LOAD_CELLS = [
    ("Fd-3m", 5.43, ("Si",), [[0, 0, 0]]),
    ("Fm-3m", 4.04, ("Al",), [[0, 0, 0]]),
    ("Fm-3m", 5.64, ("Na", "Cl"), [[0, 0, 0], [0.5, 0.5, 0.5]]),
    ("Fm-3m", 6.29, ("K", "Cl"), [[0, 0, 0], [0.5, 0.5, 0.5]]),
]


def load_structures() -> list[tuple[str, str]]:
    from pymatgen.core import Lattice, Structure

    out = []
    for group, a, elements, coords in LOAD_CELLS:
        cell = Structure.from_spacegroup(group, Lattice.cubic(a), list(elements), coords).get_primitive_structure()
        out.append((f"{''.join(elements)}.cif", cell.to(fmt="cif")))
    return out


def run_load(
    stack: Stack, *, clients: int = 16, seconds: float = 60, upload_share: float = 0.2, timeout_s: float = 30
) -> dict[str, Any]:
    """`clients` threads for `seconds`: each request an upload (a CIF of four, deduplicated after its
    first upload) with probability `upload_share`, else a read (a batch, the candidates of a batch,
    or the newest 50 candidates), each a third of the reads."""
    import httpx

    stack.start_beat()
    stack.start_worker(concurrency=1)  # screens the four originals; everything after is deduplicated
    cifs = load_structures()
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        first = client.post("/api/v1/batches", files=[("files", cifs[0])], data={"generator": "load"})
        first.raise_for_status()
    batches = [first.json()["id"]]
    samples: list[tuple[str, float, int]] = []  # (kind, seconds, status; 0: no answer)
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client_loop(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[tuple[str, float, int]] = []
        with httpx.Client(base_url=stack.url, timeout=timeout_s) as http:
            barrier.wait()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                kind = "upload" if rng.random() < upload_share else "read"
                t0 = time.perf_counter()
                try:
                    if kind == "upload":
                        r = http.post(
                            "/api/v1/batches", files=[("files", rng.choice(cifs))], data={"generator": "load"}
                        )
                        if r.status_code == 202:
                            with lock:
                                batches.append(r.json()["id"])
                    elif (pick := rng.random()) < 1 / 3:
                        r = http.get(f"/api/v1/batches/{rng.choice(batches)}")
                    elif pick < 2 / 3:
                        r = http.get("/api/v1/candidates", params={"batch_id": rng.choice(batches)})
                    else:  # the newest 50 of a table that grows with every upload
                        r = http.get("/api/v1/candidates", params={"sort": "-id", "per_page": 50})
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0
                mine.append((kind, time.perf_counter() - t0, status))
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall_s = time.monotonic() - start
    report: dict[str, Any] = {
        "clients": clients,
        "seconds": seconds,
        "wall_s": round(wall_s, 1),
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }
    for kind in ("upload", "read"):
        times = sorted(s for k, s, status in samples if k == kind and 200 <= status < 300)
        report[kind] = {
            "requests": sum(1 for k, _, _ in samples if k == kind),
            "ok": len(times),
            "p50_ms": round(1000 * percentile(times, 50), 1) if times else None,
            "p99_ms": round(1000 * percentile(times, 99), 1) if times else None,
        }
    statuses = Counter(status for _, _, status in samples)
    report["statuses"] = {str(k): v for k, v in sorted(statuses.items())}
    report["requests"] = len(samples)
    report["requests_per_s"] = round(len(samples) / wall_s, 1)
    report["errors"] = sum(v for k, v in statuses.items() if not 200 <= k < 300)
    report["no_answer"] = statuses.get(0, 0)
    report["client_5xx"] = sum(v for k, v in statuses.items() if k >= 500)
    report["server_5xx"] = stack.server_5xx()
    return report


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of an ascending list."""
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def load_line(r: dict[str, Any]) -> str:
    up, rd = r["upload"], r["read"]
    return (
        f"load: clients={r['clients']} seconds={r['seconds']:g} requests={r['requests']} "
        f"({r['requests_per_s']}/s) upload_p50={up['p50_ms']}ms upload_p99={up['p99_ms']}ms "
        f"read_p50={rd['p50_ms']}ms read_p99={rd['p99_ms']}ms errors={r['errors']} "
        f"5xx={r['client_5xx'] + len(r['server_5xx'])}"
    )


# --- the command -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    scenarios = [s.strip() for s in args.scenario.split(",") if s.strip()]
    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if not 5 <= args.n <= len(FAULT_CELLS):
        raise SystemExit(f"--n must be between 5 and {len(FAULT_CELLS)}")
    results: dict[str, Any] = {}
    lines, failed = [], False
    for scenario in scenarios:
        log(f"{scenario}: starting a stack")
        with work_dir(args.work / scenario if args.work else None, keep=args.keep) as work:
            stack_args = {"redis_url": args.redis, "lease_s": args.lease_s, "reconcile_every_s": args.reconcile_every_s}
            with Stack(work, **stack_args) as stack:
                if scenario == "faults":
                    r = run_faults(stack, n=args.n, timeout_s=args.timeout)
                    line = faults_line(r)
                    bad = (
                        r["lost"]
                        or r["unfinished"]
                        or r["duplicated"]
                        or r["api_5xx"]
                        or r["server_5xx"]
                        or r["faults_injected"] < 4
                    )
                elif scenario == "hostile":
                    from reliability_hostile import hostile_line, run_hostile

                    r = run_hostile(stack, quick=args.quick, timeout_s=args.request_timeout)
                    line = hostile_line(r)
                    bad = r["client_5xx"] or r["server_5xx"]
                else:
                    r = run_load(stack, clients=args.clients, seconds=args.seconds)
                    line = load_line(r)
                    bad = r["client_5xx"] or r["server_5xx"]
        results[scenario] = r
        failed |= bool(bad)
        lines.append(line)
        print(line, flush=True)
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}, indent=2))
    if len(lines) > 1:
        print("\n".join(lines))
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default=",".join(SCENARIOS), help="comma-separated: faults, hostile, load")
    p.add_argument("--n", type=int, default=20, help="faults: structures in the batch (at most 20)")
    p.add_argument("--timeout", type=float, default=900, help="faults: seconds to wait for the batch")
    p.add_argument("--lease-s", type=int, default=8, help="PHONONSCREEN_LEASE_S of the stack")
    p.add_argument("--reconcile-every-s", type=int, default=2, help="PHONONSCREEN_RECONCILE_EVERY_S of the stack")
    p.add_argument("--quick", action="store_true", help="hostile: only the inputs that answer in seconds")
    p.add_argument("--request-timeout", type=float, default=60, help="hostile: client timeout per request (s)")
    p.add_argument("--clients", type=int, default=16, help="load: concurrent clients")
    p.add_argument("--seconds", type=float, default=60, help="load: duration")
    p.add_argument("--redis", default=REDIS_URL, help="the broker's Redis database (flushed!)")
    p.add_argument("--work", type=Path, help="keep logs here (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder with the processes' logs")
    p.add_argument("--out", type=Path, help="write every figure as JSON here")
    return p


if __name__ == "__main__":
    sys.exit(main())
