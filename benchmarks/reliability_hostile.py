"""Hostile inputs for `reliability.py --scenario hostile`: each is sent to a running API, its answer's
status is recorded (or `timeout` / `closed`), and /health is timed all along.

An input is `quick` when it answers in seconds whatever the limits; the others build or send large
bodies (bombs, 10,000 files), or would hold the parser for minutes without the per-request limits
(a CIF that symmetry expands to 38,400 atoms, one of 5,000 blocks).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import secrets
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Status = int | str  # an HTTP status, or "timeout" / "closed" / "error: ..."
_clock = threading.local()  # seconds this thread spent in requests (building a bomb is not timed)


def _charge(seconds: float) -> None:
    _clock.seconds = getattr(_clock, "seconds", 0.0) + seconds


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int
    timeout_s: float
    work: Path


@dataclass(frozen=True)
class HostileInput:
    name: str
    what: str
    send: Callable[[Target], tuple[Status, str]]  # (status, a note)
    expect: tuple[Status, ...]
    quick: bool = True


@dataclass
class Outcome:
    name: str
    what: str
    status: Status
    expect: tuple[Status, ...]
    seconds: float  # in requests
    built_s: float  # building the input
    note: str = ""
    health_max_ms: float | None = None
    as_expected: bool = field(init=False)

    def __post_init__(self) -> None:
        self.as_expected = self.status in self.expect


# --- small real structures and request helpers ------------------------------------------------


def _cif(group: str, a: float, elements: list[str], coords: list[list[float]]) -> str:
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(group, Lattice.cubic(a), elements, coords).get_primitive_structure().to(fmt="cif")


def nacl_cif() -> str:
    return _cif("Fm-3m", 5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def multipart(parts: list[tuple[str, bytes | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body from (field, raw filename bytes or None, content); and its content type."""
    boundary = f"reliability{secrets.token_hex(8)}"
    out = bytearray()
    for name, filename, data in parts:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if filename is not None:
            out += b'; filename="' + filename + b'"\r\nContent-Type: application/octet-stream'
        out += b"\r\n\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def files_body(files: list[tuple[str, bytes]], **fields: str) -> tuple[bytes, str]:
    parts: list[tuple[str, bytes | None, bytes]] = [(k, None, v.encode()) for k, v in fields.items()]
    parts += [("files", name.encode(), data) for name, data in files]
    return multipart(parts)


def post(target: Target, body: bytes, content_type: str, *, path: str = "/api/v1/batches") -> tuple[Status, str]:
    import httpx

    t0 = time.perf_counter()
    try:
        r = httpx.post(
            target.url + path, content=body, headers={"content-type": content_type}, timeout=target.timeout_s
        )
    except httpx.TimeoutException:
        return "timeout", ""
    except httpx.HTTPError as exc:
        return f"error: {type(exc).__name__}", str(exc)[:200]
    finally:
        _charge(time.perf_counter() - t0)
    return r.status_code, _note(r)


def get(target: Target, path: str, params: dict[str, str] | None = None) -> tuple[Status, str]:
    import httpx

    t0 = time.perf_counter()
    try:
        r = httpx.get(target.url + path, params=params, timeout=target.timeout_s)
    except httpx.TimeoutException:
        return "timeout", ""
    except httpx.HTTPError as exc:
        return f"error: {type(exc).__name__}", str(exc)[:200]
    finally:
        _charge(time.perf_counter() - t0)
    return r.status_code, _note(r)


def _note(r: Any) -> str:
    """What the answer said, briefly: an error code, the rejection codes, or a page's total."""
    try:
        data = r.json()
    except ValueError:
        return r.text[:120]
    if isinstance(data, dict):
        if "total" in data and "items" in data:
            return f"total {data['total']}"
        if "structures" in data and "accepted" in data:
            codes = sorted({s.get("code") for s in data["structures"] if not s.get("accepted")} - {None})
            return f"accepted {data['accepted']}, rejected {data['rejected']} {codes}"
        detail = data.get("detail")
        if isinstance(detail, dict):
            codes = sorted({s.get("code") for s in detail.get("structures", []) if s.get("code")})
            return f"{detail.get('code')} {codes}" if codes else str(detail.get("code") or detail)[:120]
        if isinstance(detail, list) and detail:
            return f"{detail[0].get('type')} at {detail[0].get('loc')}"[:120]
        return str(detail)[:120]
    return str(data)[:120]


def raw(target: Target, data: bytes, *, half_close: bool, timeout_s: float | None = None) -> tuple[Status, str]:
    """Send raw bytes on a fresh connection; the status line of whatever comes back."""
    buf, t0 = b"", time.perf_counter()
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout_s or target.timeout_s) as sock:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            while b"\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                buf += chunk
    except TimeoutError:
        return "timeout", "no answer: the server still waits for the rest of the body"
    except OSError as exc:
        return "closed", f"{type(exc).__name__}"
    finally:
        _charge(time.perf_counter() - t0)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
    if match:
        return int(match.group(1)), ""
    return ("closed", "the server closed the connection without an answer") if not buf else ("garbage", repr(buf[:60]))


def _head(target: Target, *, length: int, content_type: str = "application/json") -> bytes:
    return (
        f"POST /api/v1/batches HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


# --- archives and bombs -------------------------------------------------------------------------


def zip_of(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return out.getvalue()


def zip_bomb_members(*, members: int = 300, member_mib: int = 1) -> bytes:
    """`members` members of `member_mib` MiB of zeros each (300 MiB inflated from ~300 KB)."""
    zeros = bytes(member_mib << 20)
    return zip_of([(f"bomb/{i:04d}.cif", zeros) for i in range(members)])


def zip_bomb_single(*, gib: int = 1) -> bytes:
    """One member of `gib` GiB of zeros, streamed through deflate (a ~1 MB zip)."""
    out, chunk = io.BytesIO(), bytes(16 << 20)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb.cif", "w", force_zip64=True) as member:
            for _ in range((gib << 30) // len(chunk)):
                member.write(chunk)
    return out.getvalue()


def gzip_bomb(*, mib: int = 1024) -> bytes:
    out, chunk = io.BytesIO(), bytes(16 << 20)
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as stream:
        for _ in range(mib // 16):
            stream.write(chunk)
    return out.getvalue()


def gzip_nested(data: bytes, *, depth: int) -> bytes:
    for _ in range(depth):
        data = gzip.compress(data, compresslevel=1)
    return data


def deflated_pt(work: Path, *, mib: int = 300) -> bytes:
    """A CDVAE-shaped `.pt` whose `frac_coords` holds `mib` MiB of zeros, re-zipped with deflate
    (torch writes stored members; it reads deflated ones too): a few hundred KB on the wire."""
    import torch

    path = work / "huge.pt"
    n = (mib << 20) // 12  # float32 x 3
    obj = {
        "frac_coords": torch.zeros(1, n, 3),
        "num_atoms": torch.tensor([[n]]),
        "atom_types": torch.full((1, n), 11),
        "lengths": torch.full((1, 1, 3), 5.0),
        "angles": torch.full((1, 1, 3), 90.0),
    }
    torch.save(obj, path)
    del obj
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            with src.open(info) as reader, dst.open(info.filename, "w", force_zip64=True) as writer:
                while block := reader.read(16 << 20):
                    writer.write(block)
    path.unlink()
    return out.getvalue()


def tar_of_links() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, kind, target in (("x.cif", tarfile.SYMTYPE, "/etc/passwd"), ("y.cif", tarfile.LNKTYPE, "x.cif")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            archive.addfile(info)
        device = tarfile.TarInfo("z.cif")
        device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 3  # /dev/null
        archive.addfile(device)
    return out.getvalue()


def tar_gz_of(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def fm3m_cif(*, rows: int, a: float = 80.0, seed: int = 0) -> str:
    """A CIF in F m -3 m with `rows` atom-site rows at general positions (192 images each once
    expanded: 38,400 atoms for 200 rows, the default PHONONSCREEN_MAX_ATOMS of rows)."""
    import random

    from pymatgen.symmetry.groups import SpaceGroup

    rng = random.Random(seed)
    ops = [op.as_xyz_str() for op in SpaceGroup("Fm-3m").symmetry_ops]
    lines = [
        "data_expands",
        "_symmetry_space_group_name_H-M   'F m -3 m'",
        "_symmetry_Int_Tables_number   225",
        *(f"_cell_length_{x}   {a:.4f}" for x in "abc"),
        *(f"_cell_angle_{x}   90.0" for x in ("alpha", "beta", "gamma")),
        "loop_",
        "_symmetry_equiv_pos_site_id",
        "_symmetry_equiv_pos_as_xyz",
        *(f"  {i + 1}  '{op}'" for i, op in enumerate(ops)),
        "loop_",
        "_atom_site_label",
        "_atom_site_type_symbol",
        "_atom_site_fract_x",
        "_atom_site_fract_y",
        "_atom_site_fract_z",
        "_atom_site_occupancy",
        *(
            f"  Na{i}  Na  {rng.uniform(0.01, 0.24):.5f}  {rng.uniform(0.01, 0.24):.5f}  {rng.uniform(0.01, 0.24):.5f}  1"
            for i in range(rows)
        ),
    ]
    return "\n".join(lines) + "\n"


# --- the inputs ----------------------------------------------------------------------------------


def _json(body: bytes) -> Callable[[Target], tuple[Status, str]]:
    return lambda t: post(t, body, "application/json")


def _upload(files: Callable[[], list[tuple[str, bytes]]], **fields: str) -> Callable[[Target], tuple[Status, str]]:
    def send(t: Target) -> tuple[Status, str]:
        return post(t, *files_body(files(), **fields))

    return send


def _get(path: str, **params: str) -> Callable[[Target], tuple[Status, str]]:
    return lambda t: get(t, path, params or None)


def _structure_json(name: str, cif: str, generator: str = "hostile") -> bytes:
    return json.dumps({"generator": generator, "structures": [{"name": name, "cif": cif}]}).encode()


def _traversal_filename(t: Target) -> tuple[Status, str]:
    planted = Path("/tmp/phononscreen-reliability-evil.cif")
    planted.unlink(missing_ok=True)
    status, note = post(t, *files_body([(f"../../../../..{planted}", nacl_cif().encode())]))
    store = t.work / "artifacts"
    outside = [str(p) for p in t.work.rglob("*evil*") if store not in p.parents]
    outside += [str(planted)] if planted.exists() else []
    return status, f"{note}; written outside the artifact store: {outside}"


def _short_body(half_close: bool) -> Callable[[Target], tuple[Status, str]]:
    def send(t: Target) -> tuple[Status, str]:
        return raw(t, _head(t, length=100_000) + b'{"generator": "g", "structures": [', half_close=half_close,
                   timeout_s=None if half_close else 5)  # fmt: skip

    return send


def _declared_huge(t: Target) -> tuple[Status, str]:
    return raw(t, _head(t, length=10**15) + b"{}", half_close=False)


def _chunked_over_limit(t: Target) -> tuple[Status, str]:
    import httpx

    def chunks():  # no Content-Length: the limit must count the body as it streams in
        block = b"x" * (1 << 20)
        for _ in range(60):
            yield block

    t0 = time.perf_counter()
    try:
        r = httpx.post(t.url + "/api/v1/batches", content=chunks(), headers={"content-type": "application/json"},
                       timeout=t.timeout_s)  # fmt: skip
    except httpx.TimeoutException:
        return "timeout", ""
    except httpx.HTTPError as exc:  # the server may answer 413 and close before the body is sent
        return "closed", f"{type(exc).__name__}: {exc}"[:200]
    finally:
        _charge(time.perf_counter() - t0)
    return r.status_code, _note(r)


def _race(t: Target) -> tuple[Status, str]:
    """20 uploads at once, each naming the same generator no request has named before."""
    import httpx

    name = f"race-{secrets.token_hex(4)}"
    body, content_type = files_body([("NaCl.cif", nacl_cif().encode())], generator=name)
    barrier, statuses = threading.Barrier(20), []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            status: Status = httpx.post(t.url + "/api/v1/batches", content=body,
                                        headers={"content-type": content_type}, timeout=t.timeout_s).status_code  # fmt: skip
        except httpx.TimeoutException:
            status = "timeout"
        except httpx.HTTPError as exc:
            status = f"error: {type(exc).__name__}"
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(20)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _charge(time.perf_counter() - t0)
    listed = get(t, "/api/v1/candidates", {"generator": name, "per_page": "1"})
    worst = max(statuses, key=lambda s: s if isinstance(s, int) else 1000)
    counts = {str(s): statuses.count(s) for s in sorted(set(statuses), key=str)}
    return worst, f"20 uploads: {counts}; candidates under {name!r}: {listed[1]}"


def _truncated(cif: str) -> Callable[[Target], tuple[Status, str]]:
    def send(t: Target) -> tuple[Status, str]:
        body, content_type = files_body([("NaCl.cif", cif.encode())])
        return post(t, body[: len(body) // 2], content_type)

    return send


def _many_blocks(n: int) -> bytes:
    """One CIF file of `n` data blocks, each the same small cell under its own name."""
    cif = nacl_cif()
    block = cif[cif.index("data_") :].split("\n", 1)[1]  # without its data_ line (and pymatgen's comment)
    return "".join(f"data_s{i}\n{block}" for i in range(n)).encode()


def _many_fields(t: Target) -> tuple[Status, str]:
    parts: list[tuple[str, bytes | None, bytes]] = [(f"field{i}", None, b"x") for i in range(1000)]
    return post(t, *multipart([*parts, ("files", b"NaCl.cif", nacl_cif().encode())]))


def _many_files(n: int) -> Callable[[Target], tuple[Status, str]]:
    return _upload(lambda: [(f"f{i:05d}.cif", b"not a structure\n") for i in range(n)])


def inputs(target: Target) -> list[HostileInput]:
    """Every hostile input, in the order they are sent (the slowest last)."""
    cif = nacl_cif()
    return [
        HostileInput("json_malformed", "JSON cut off mid-array", _json(b'{"generator": "g", "structures": ['), (422,)),
        HostileInput("json_wrong_types", "structures as a string, generator as a number",
                     _json(b'{"structures": "NaCl", "generator": 5}'), (422,)),
        HostileInput("json_deep_nesting", "100,000 nested arrays",
                     _json(b'{"structures": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"), (422,)),
        HostileInput("json_lone_surrogate", "a structure name holding a lone UTF-16 surrogate",
                     _json(_structure_json("\ud800.cif", cif)), (422,)),
        HostileInput("json_nul_name", "a structure name with a NUL", _json(_structure_json("a\x00b.cif", cif)), (422,)),
        HostileInput("json_overlong_name", "a 100,000-character structure name",
                     _json(_structure_json("x" * 100_000, cif)), (422,)),
        HostileInput("json_overlong_generator", "a 10,000-character generator name",
                     _json(_structure_json("NaCl.cif", cif, generator="g" * 10_000)), (422,)),
        HostileInput("json_huge_number", "a number with a million-digit exponent as the name",
                     _json(b'{"structures": [{"name": 1e999999, "cif": "x"}]}'), (422,)),
        HostileInput("multipart_nul_filename", "a file name with a NUL",
                     _upload(lambda: [("a\x00b.cif", cif.encode())]), (422,)),
        HostileInput("multipart_overlong_filename", "a 5,000-character file name",
                     _upload(lambda: [("x" * 5000 + ".cif", cif.encode())]), (422,)),
        HostileInput("multipart_nul_generator", "a generator field with a NUL",
                     _upload(lambda: [("NaCl.cif", cif.encode())], generator="a\x00b"), (422,)),
        HostileInput("form_1000_fields", "1,000 form fields besides one file", _many_fields, (422, 413)),
        HostileInput("json_20000_structures", "JSON with 20,000 structures", _json(json.dumps({"structures": [
            {"name": f"s{i}", "cif": "x"} for i in range(20_000)]}).encode()), (413, 422)),
        HostileInput("multipart_no_boundary", "multipart without a boundary",
                     lambda t: post(t, b"--x\r\n\r\n", "multipart/form-data"), (422, 400)),
        HostileInput("multipart_truncated", "multipart cut before its closing boundary",
                     _truncated(cif), (422, 400)),
        HostileInput("wrong_content_type", "text/plain body", lambda t: post(t, b"hello", "text/plain"), (415,)),
        HostileInput("short_body_closed", "Content-Length 100,000, 35 bytes sent, then the client half-closes",
                     _short_body(True), ("closed", 400, 422)),
        HostileInput("short_body_stalled", "Content-Length 100,000, 35 bytes sent, then silence (5 s client wait)",
                     _short_body(False), ("timeout", 400, 408, 422)),
        HostileInput("declared_length_huge", "Content-Length 10^15", _declared_huge, (413,)),
        HostileInput("chunked_over_limit", "60 MiB chunked body (no Content-Length)", _chunked_over_limit,
                     (413, "closed"), quick=False),
        HostileInput("path_int_huge", "batch id 10^23", _get("/api/v1/batches/" + "9" * 23), (422,)),
        HostileInput("path_int_over_int32", "candidate id 2^31 (an artifact)",
                     _get("/api/v1/candidates/2147483648/relaxed.cif"), (422,)),
        HostileInput("path_int_negative", "batch id -1", _get("/api/v1/batches/-1"), (422,)),
        HostileInput("query_int_huge", "page and per_page 10^30",
                     _get("/api/v1/candidates", page="1" + "0" * 30, per_page="1" + "0" * 30), (422,)),
        HostileInput("query_last_page", "page 2^31-1 of 500 (offset ~10^12)",
                     _get("/api/v1/candidates", page="2147483647", per_page="500"), (200,)),
        HostileInput("query_float_inf", "min_frequency_gte=1e999", _get("/api/v1/candidates", min_frequency_gte="1e999"),
                     (422,)),
        HostileInput("query_float_nan", "min_frequency_lte=nan", _get("/api/v1/candidates", min_frequency_lte="nan"),
                     (422,)),
        HostileInput("query_space_group_huge", "space_group=10^20",
                     _get("/api/v1/candidates", space_group="1" + "0" * 20), (422,)),
        HostileInput("query_nul", "generator=NUL", _get("/api/v1/candidates", generator="\x00"), (422,)),
        HostileInput("query_group_by", "group_by=%", _get("/api/v1/reports/stability", group_by="%"), (422,)),
        HostileInput("generator_race", "20 parallel uploads naming one new generator", _race, (202,)),
        HostileInput("like_elements", "elements=% (a LIKE wildcard)", _get("/api/v1/candidates", elements="%"), (422,)),
        HostileInput("like_generator", "generator=% must match no generator (total 0)",
                     _get("/api/v1/candidates", generator="%"), (200,)),
        HostileInput("like_formula_system", "formula=% and crystal_system=_ (total 0)",
                     _get("/api/v1/candidates", formula="%", crystal_system="_"), (200,)),
        HostileInput("zip_traversal", "zip members ../../x, /abs, C:\\x, a/../../x beside one good CIF",
                     _upload(lambda: [("t.zip", zip_of([("../../../tmp/evil1.cif", cif.encode()),
                                                        ("/tmp/evil2.cif", cif.encode()),
                                                        ("C:\\evil3.cif", cif.encode()),
                                                        ("ok/../../evil4.cif", cif.encode()),
                                                        ("good.cif", cif.encode())]))]), (202,)),
        HostileInput("filename_traversal", "file name ../../../../../tmp/…evil.cif", _traversal_filename, (202,)),
        HostileInput("tar_links", "tar.gz of a symlink to /etc/passwd, a hard link and a device",
                     _upload(lambda: [("links.tar.gz", tar_of_links())]), (422,)),
        HostileInput("nested_zip", "a zip inside a zip", _upload(lambda: [("outer.zip", zip_of([
            ("inner.zip", zip_of([("NaCl.cif", cif.encode())]))]))]), (422,)),
        HostileInput("nested_tar_in_zip", "a tar.gz inside a zip", _upload(lambda: [("outer.zip", zip_of([
            ("inner.tar.gz", tar_gz_of([("NaCl.cif", cif.encode())]))]))]), (422,)),
        HostileInput("gzip_nested_2000", "a CIF gzipped 2,000 times (deep.gz)",
                     _upload(lambda: [("deep.gz", gzip_nested(cif.encode(), depth=2000))]), (422, 413)),
        HostileInput("cif_fm3m_384", "Fm-3m CIF, 2 general rows: 384 atoms once expanded",
                     _upload(lambda: [("expands.cif", fm3m_cif(rows=2, a=12.0).encode())]), (422,)),
        HostileInput("cif_nan", "CIF with nan coordinates", _upload(lambda: [("nan.cif", re.sub(
            r"(Na\s+Na\d*\s+\d+\s+)\S+", r"\1nan", cif, count=1).encode())]), (422,)),
        HostileInput("cif_huge_cell", "CIF with a = 1e308", _upload(lambda: [("huge.cif", re.sub(
            r"_cell_length_a\s+\S+", "_cell_length_a   1e308", cif).encode())]), (422,)),
        HostileInput("poscar_zero_scale", "POSCAR with scale 0", _upload(lambda: [(
            "POSCAR", b"zero\n0.0\n3 0 0\n0 3 0\n0 0 3\nNa\n1\nDirect\n0 0 0\n")]), (422,)),
        HostileInput("poscar_huge_count", "POSCAR declaring 999,999,999 atoms", _upload(lambda: [(
            "POSCAR", b"huge\n1.0\n3 0 0\n0 3 0\n0 0 3\nNa\n999999999\nDirect\n0 0 0\n")]), (422,)),
        HostileInput("extxyz_huge_count", "extxyz declaring 10^11 atoms", _upload(lambda: [(
            "x.extxyz", b'99999999999\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3\nNa 0 0 0\n')]),
            (422,)),
        HostileInput("zip_bomb_members", "zip of 300 members of 1 MiB of zeros (300 MiB inflated)",
                     _upload(lambda: [("bomb.zip", zip_bomb_members())]), (422, 413), quick=False),
        HostileInput("zip_bomb_single", "zip of one 1 GiB member of zeros",
                     _upload(lambda: [("bomb1.zip", zip_bomb_single())]), (422, 413), quick=False),
        HostileInput("gzip_bomb", "1 GiB of zeros as bomb.cif.gz", _upload(lambda: [("bomb.cif.gz", gzip_bomb())]),
                     (422, 413), quick=False),
        HostileInput("pt_deflated_huge", "CDVAE-shaped .pt with 300 MiB of zeros, deflate-compressed",
                     _upload(lambda: [("eval_gen.pt", deflated_pt(target.work))]), (422, 413), quick=False),
        HostileInput("zip_20000_members", "zip of 20,000 one-line members", _upload(lambda: [("many.zip", zip_of([
            (f"m{i:05d}.cif", b"x\n") for i in range(20_000)]))]), (413, 422), quick=False),
        HostileInput("cif_5000_blocks", "one CIF of 5,000 small data blocks (one crystal, 5,000 names)",
                     _upload(lambda: [("blocks.cif", _many_blocks(5000))]), (202, 413), quick=False),
        HostileInput("files_10000", "10,000 files in one request", _many_files(10_000), (422, 413), quick=False),
        HostileInput("files_10001", "10,001 files in one request", _many_files(10_001), (422, 413), quick=False),
        HostileInput("cif_fm3m_38400", "Fm-3m CIF, 200 general rows: 38,400 atoms once expanded",
                     _upload(lambda: [("expands.cif", fm3m_cif(rows=200).encode())]), (422,), quick=False),
    ]  # fmt: skip


# --- the scenario --------------------------------------------------------------------------------


class HealthProbe(threading.Thread):
    """GET /health every `every_s`, recording (start, latency s or None for no answer)."""

    def __init__(self, url: str, *, every_s: float = 0.25, timeout_s: float = 10) -> None:
        super().__init__(daemon=True)
        self.url, self.every_s, self.timeout_s = url, every_s, timeout_s
        self.samples: list[tuple[float, float | None]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop_event.is_set():
                t0 = time.monotonic()
                try:
                    ok = client.get(self.url + "/health").status_code == 200
                    latency: float | None = time.monotonic() - t0 if ok else None
                except httpx.HTTPError:
                    latency = None
                self.samples.append((t0, latency))
                self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def worst_ms(self, start: float, end: float) -> float | None:
        """The slowest answered /health poll sent between `start` and `end` (None: none answered)."""
        inside = [lat for t, lat in self.samples if start <= t <= end and lat is not None]
        return round(1000 * max(inside), 1) if inside else None


def run_hostile(
    stack: Any, *, quick: bool = False, timeout_s: float = 60, idle_timeout_s: float = 300
) -> dict[str, Any]:
    """Send every hostile input (only the quick ones with `quick`) to `stack`'s API; returns each
    outcome, the 5xx seen by the client and in the API's log, timeouts, and /health latency."""
    from reliability import percentile

    host, port = stack.url.removeprefix("http://").split(":")
    target = Target(url=stack.url, host=host, port=int(port), timeout_s=timeout_s, work=stack.work)
    probe = HealthProbe(stack.url)
    probe.start()
    outcomes = []
    print(f"  {'input':28s} {'status':>8s} {'request s':>9s} {'health max ms':>13s}  answer", flush=True)
    for item in inputs(target):
        if quick and not item.quick:
            continue
        t0 = time.monotonic()
        _clock.seconds = 0.0
        try:
            status, note = item.send(target)
        except Exception as exc:  # noqa: BLE001 - a failure to build or send is recorded, not fatal
            status, note = f"error: {type(exc).__name__}", str(exc)[:200]
        total, request_s = time.monotonic() - t0, _clock.seconds
        # /health is judged over the requests, not over building the bombs (the client's CPU)
        outcome = Outcome(item.name, item.what, status, item.expect, round(request_s, 2), round(total - request_s, 2),
                          note, probe.worst_ms(t0 + total - request_s, time.monotonic()))  # fmt: skip
        outcomes.append(outcome)
        health = "-" if outcome.health_max_ms is None else f"{outcome.health_max_ms:.0f}"
        print(f"  {outcome.name:28s} {str(outcome.status):>8s} {outcome.seconds:9.2f} {health:>13s}  "
              f"{'' if outcome.as_expected else 'UNEXPECTED '}{note}"[:240], flush=True)  # fmt: skip
    busy_s = _wait_idle(stack, timeout_s=idle_timeout_s)
    probe.stop()
    latencies = sorted(lat for _, lat in probe.samples if lat is not None)
    return {
        "inputs": len(outcomes),
        "quick": quick,
        "outcomes": [vars(o) for o in outcomes],
        "client_5xx": sum(1 for o in outcomes if isinstance(o.status, int) and o.status >= 500),
        "server_5xx": stack.server_5xx(),
        "timeouts": sum(1 for o in outcomes if o.status == "timeout"),
        "unexpected": [o.name for o in outcomes if not o.as_expected],
        "busy_after_last_s": busy_s,
        "health": {
            "polls": len(probe.samples),
            "unanswered": sum(1 for _, lat in probe.samples if lat is None),
            "p50_ms": round(1000 * percentile(latencies, 50), 1) if latencies else None,
            "p99_ms": round(1000 * percentile(latencies, 99), 1) if latencies else None,
            "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        },
    }


def _wait_idle(stack: Any, *, timeout_s: float) -> float:
    """Seconds until the API's processes use under 10 % of a core for 2 s (work a client gave up on
    may still run); stops waiting after `timeout_s`."""
    import psutil

    api = psutil.Process(stack.processes["api"].pid)
    start = time.monotonic()
    quiet = 0
    while time.monotonic() - start < timeout_s and quiet < 2:
        before = _cpu_s(api)
        time.sleep(1)
        quiet = quiet + 1 if _cpu_s(api) - before < 0.1 else 0
    return round(time.monotonic() - start - 2, 1)


def _cpu_s(process: Any) -> float:
    """CPU seconds of a process and its children (those still alive)."""
    import psutil

    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def hostile_line(r: dict[str, Any]) -> str:
    h = r["health"]
    return (
        f"hostile: inputs={r['inputs']} 5xx={r['client_5xx'] + len(r['server_5xx'])} timeouts={r['timeouts']} "
        f"unexpected={len(r['unexpected'])} health_p99={h['p99_ms']}ms health_max={h['max_ms']}ms "
        f"health_unanswered={h['unanswered']}"
    )
