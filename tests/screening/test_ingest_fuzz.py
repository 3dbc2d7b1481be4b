"""Property-based tests of every ingest reader: whatever the bytes (random, or real files mutated,
truncated, archived and corrupted), a reader returns records, each a structure or an IngestError
with a known code, and never raises."""

from __future__ import annotations

import ast
import bz2
import gzip
import io
import json
import lzma
import re
import resource
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from functools import cache
from typing import Any, get_args

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure

from tests.conftest import EXAMPLES
from workers.screening.ingest import formats
from workers.screening.ingest.read import read_bytes, sniff_format
from workers.screening.ingest.validate import validate_structure
from workers.screening.types import IngestError, IngestErrorCode, StructureRecord

pytestmark = pytest.mark.timeout(300)  # a reader that loops forever fails here, not in CI's budget

CODES = frozenset(get_args(IngestErrorCode))
FORMATS = {"cif", "poscar", "extxyz", "json", "csv", "pt", "zip", "tar", "gz", "bz2", "xz", None}
MAX_ATOMS = 40  # small cells keep each parse cheap; the limit's own paths are exercised too
# bounded for a 2-core machine; derandomized so that a run is repeatable, and no example database
# is written into the checkout
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
FILENAMES = [
    "x.cif", "x.mcif", "POSCAR", "CONTCAR_1", "x.vasp", "x.poscar", "x.extxyz", "x.xyz", "x.json", "x.csv",
    "x.pt", "x.pth", "x.zip", "x.tar", "x.tar.gz", "x.tgz", "x.tar.bz2", "x.gz", "x.cif.gz", "x.bz2", "x.xz",
    "noext", "", ".", "dir/", "a\\b.cif", "x.CIF", "x.txt",
]  # fmt: skip


# --- the properties -------------------------------------------------------------------------------


def check_records(records: Any, *, max_atoms: int = MAX_ATOMS) -> None:
    """At least one record; each either a structure of at most `max_atoms` sites or an error with a
    known code; indices in order."""
    assert isinstance(records, list) and records
    event("some structure read" if any(r.ok for r in records) else f"only errors, first {records[0].error.code}")
    for index, record in enumerate(records):
        assert isinstance(record, StructureRecord) and isinstance(record.name, str)
        assert record.index == index
        assert (record.structure is None) != (record.error is None), record
        if record.error is not None:
            check_error(record.error)
        else:
            assert isinstance(record.structure, Structure) and 0 < len(record.structure) <= max_atoms


def check_error(error: Any) -> None:
    assert isinstance(error, IngestError) and error.code in CODES and isinstance(error.message, str)


def check_items(items: Any) -> None:
    """What a parser yields: (name, Structure or IngestError) pairs."""
    for name, item in items:
        assert isinstance(name, str)
        if isinstance(item, IngestError):
            check_error(item)
        else:
            assert isinstance(item, Structure)


def call(reader: Any, *args: Any, **kwargs: Any) -> Any:
    """`reader(*args, **kwargs)`: any exception fails the example."""
    return reader(*args, **kwargs)


def read(data: bytes, filename: str, *, text: bool = True, **limits: int) -> list[StructureRecord]:
    limits.setdefault("max_atoms", MAX_ATOMS)
    return call(read_bytes, data, filename, **limits)


def parse(parser: Any, text: str) -> list[Any]:
    return call(lambda: list(parser(text, name="f", max_atoms=MAX_ATOMS)))


@pytest.fixture(autouse=True)
def memory_cap() -> Iterator[None]:
    """At most 4 GiB more address space while a test runs: a reader that tries to allocate the
    machine away fails with MemoryError instead of calling the OOM killer on CI."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as status:
        used_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    cap = used_kib * 1024 + (4 << 30)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run_isolated(snippet: str) -> subprocess.CompletedProcess[str]:
    """`snippet` in a child with 1 GiB of address space and 60 s: for inputs that hang or allocate
    without bound, which in this process would never return or take the machine's memory."""
    code = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n" + snippet
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("did not return within 60 s") from None


# --- seeds: real files in every text format, from examples/ ----------------------------------------


@cache
def structures() -> list[Structure]:
    names = ("Si_diamond", "NaCl_rocksalt", "GaN_wurtzite", "SrTiO3_cubic")
    return [Structure.from_file(EXAMPLES / f"{name}.cif") for name in names]


@cache
def seeds() -> dict[str, list[str]]:
    """Valid files of each text format (test_seeds_are_valid checks that they read)."""
    from ase.io import write as ase_write
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.vasp import Poscar

    cells = structures()
    extxyz = io.StringIO()
    ase_write(extxyz, [AseAtomsAdaptor.get_atoms(s) for s in cells[:2]], format="extxyz")
    csv_cif = "material_id,cif\n" + "".join(f'm{i},"{s.to(fmt="cif")}"\n' for i, s in enumerate(cells[:2]))
    csv_repr = "structure\n" + "".join(f'"{s.as_dict()!r}"\n' for s in cells[:2])
    return {
        "cif": [(EXAMPLES / f"{n}.cif").read_text() for n in ("Si_diamond", "GaN_wurtzite")]
        + ["".join(s.to(fmt="cif") for s in cells[:2])],  # two data blocks
        "poscar": [Poscar(s).get_str() for s in cells[:2]],
        "extxyz": [extxyz.getvalue()],
        "json": [
            json.dumps(cells[0].as_dict()),
            json.dumps([s.as_dict() for s in cells[:2]]),
            json.dumps([{"material_id": "mp-1", "structure": cells[1].as_dict()}]),
            json.dumps({"a": cells[0].as_dict(), "b": cells[2].as_dict()}),
        ],
        "csv": [csv_cif, csv_repr],
    }


SUFFIX = {"cif": "cif", "poscar": "vasp", "extxyz": "extxyz", "json": "json", "csv": "csv"}
PARSERS = {
    "cif": formats.parse_cif,
    "poscar": formats.parse_poscar,
    "extxyz": formats.parse_extxyz,
    "json": formats.parse_json,
    "csv": formats.parse_csv,
}
NASTY = [
    "nan", "inf", "-inf", "1e308", "-1e308", "1e-320", "0", "-0", "-1", "1", "2", "1000000", "99999999999999999999",
    "?", ".", "'", '"', "\x00", "data_", "data_x#2", "loop_", "_atom_site_fract_x", "_atom_site_occupancy",
    "_symmetry_equiv_pos_as_xyz", "'x,y,z'", "'-x+1/2,y,z'", 'Lattice="', 'Lattice="0 0 0 0 0 0 0 0 0"',
    "pbc=", "Properties=species:S:1:pos:R:3", "{", "}", "[", "]", ",", ":", "\n", "\r\n", "\r", "\t", "#",
    "é", "\ufeff", "\u2028", "²", "X", "Xx", "D", "Si0.5+", '"@class": "Molecule"', '"sites": []', "None",
]  # fmt: skip
NUMBER = re.compile(r"-?\d+(\.\d*)?([eE][-+]?\d+)?")


EDITS = ["number", "number", "insert", "insert", "duplicate", "drop", "cut", "truncate"]  # mostly small edits


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """`text` after up to four edits: swap a number, insert, duplicate or drop a line, cut, truncate."""
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(EDITS))
        if edit == "cut":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif edit == "insert":
            text = text[:at] + draw(st.sampled_from(NASTY) | st.text(max_size=12)) + text[at:]
        elif edit == "number":
            numbers = list(NUMBER.finditer(text))
            if numbers:
                match = draw(st.sampled_from(numbers))
                text = text[: match.start()] + draw(st.sampled_from(NASTY)) + text[match.end() :]
        elif edit in ("duplicate", "drop"):
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines[i : i + 1] = [lines[i]] * (2 if edit == "duplicate" else 0) * draw(st.integers(1, 3))
                text = "".join(lines)
        else:
            text = text[:at]
    return text


def near_valid(fmt: str) -> st.SearchStrategy[str]:
    return st.deferred(lambda: st.sampled_from(seeds()[fmt])).flatmap(mutated)


ANY_FORMAT = st.sampled_from(sorted(SUFFIX))
NEAR_VALID_TEXT = ANY_FORMAT.flatmap(lambda fmt: st.tuples(st.just(fmt), near_valid(fmt) | st.text(max_size=300)))


def test_seeds_are_valid() -> None:
    for fmt, texts in seeds().items():
        for text in texts:
            records = read_bytes(text.encode(), f"seed.{SUFFIX[fmt]}")
            assert records and all(r.ok for r in records), (fmt, [(r.name, r.error) for r in records])


# --- read_bytes and sniff_format on anything --------------------------------------------------------


@FUZZ
@given(filename=st.sampled_from(FILENAMES) | st.text(max_size=30), head=st.binary(max_size=600))
def test_sniff_format_names_a_known_format_or_none(filename: str, head: bytes) -> None:
    assert sniff_format(filename, head) in FORMATS


@FUZZ
@given(data=st.binary(max_size=3000), filename=st.sampled_from(FILENAMES) | st.text(max_size=30))
def test_read_bytes_on_random_bytes(data: bytes, filename: str) -> None:
    check_records(read(data, filename))


@FUZZ
@given(
    fmt_text=NEAR_VALID_TEXT,
    named=st.booleans(),
    limits=st.fixed_dictionaries(
        {}, optional={"max_atoms": st.integers(1, MAX_ATOMS), "max_structures": st.integers(1, 4)}
    ),
)
def test_read_bytes_on_near_valid_text(fmt_text: tuple[str, str], named: bool, limits: dict[str, int]) -> None:
    fmt, text = fmt_text
    # named by its format's suffix, or left for the sniffer to recognise
    records = read(text.encode(), f"x.{SUFFIX[fmt]}" if named else "upload", **limits)
    check_records(records, max_atoms=limits.get("max_atoms", MAX_ATOMS))


# --- each text parser on its own format, mutated, and on any text ----------------------------------


@FUZZ
@given(fmt_text=NEAR_VALID_TEXT)
def test_each_text_parser_yields_structures_or_errors(fmt_text: tuple[str, str]) -> None:
    fmt, text = fmt_text
    check_items(parse(PARSERS[fmt], text))


@FUZZ
@given(parser=st.sampled_from(sorted(PARSERS)), text=st.text(max_size=400))
def test_each_text_parser_on_any_text(parser: str, text: str) -> None:
    check_items(parse(PARSERS[parser], text))


# --- archives and compressed files: whole, truncated, corrupted ------------------------------------

MEMBER_NAMES = [
    "a.cif", "dir/b.cif", "POSCAR", "c.extxyz", "d.json", "e.csv", "f.cif.gz", "g.zip", "h.tar", "notes.txt",
    "noext", "../up.cif", "/abs.cif", "C:win.cif", "__MACOSX/a.cif", ".hidden.cif", "dir/.x/y.cif", "a\\b.cif",
]  # fmt: skip


def _zip(members: list[tuple[str, bytes]], compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar(members: list[tuple[str, bytes]], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


PACKERS = {
    "x.zip": lambda m: _zip(m, zipfile.ZIP_DEFLATED),
    "x.zip.stored": lambda m: _zip(m, zipfile.ZIP_STORED),
    "x.tar": lambda m: _tar(m, "w"),
    "x.tar.gz": lambda m: _tar(m, "w:gz"),
    "x.tar.bz2": lambda m: _tar(m, "w:bz2"),
    "x.tar.xz": lambda m: _tar(m, "w:xz"),
    "x.cif.gz": lambda m: gzip.compress(m[0][1]),
    "x.cif.bz2": lambda m: bz2.compress(m[0][1]),
    "x.cif.xz": lambda m: lzma.compress(m[0][1]),
}
MEMBER = st.tuples(
    st.sampled_from(MEMBER_NAMES),
    (ANY_FORMAT.flatmap(near_valid) | st.deferred(lambda: st.sampled_from(seeds()["cif"])) | st.text(max_size=50)).map(
        str.encode
    ),
)


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` whole, truncated, or with a few bytes flipped."""
    kind = draw(st.sampled_from(["whole", "whole", "truncated", "flipped"]))
    if kind == "truncated":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "flipped" and data:
        flipped = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            flipped[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
        return bytes(flipped)
    return data


@FUZZ
@given(
    packer=st.sampled_from(sorted(PACKERS)),
    members=st.lists(MEMBER, min_size=1, max_size=3),
    data=st.data(),
    limits=st.fixed_dictionaries(
        {}, optional={"max_bytes": st.integers(1, 20_000), "max_structures": st.integers(1, 4)}
    ),
)
def test_read_bytes_on_archives_whole_truncated_or_corrupted(
    packer: str, members: list[tuple[str, bytes]], data: st.DataObject, limits: dict[str, int]
) -> None:
    packed = data.draw(damaged(PACKERS[packer](members)))
    filename = packer.removesuffix(".stored") if data.draw(st.booleans()) else "upload"  # by name or by content
    check_records(read(packed, filename, **limits))


# --- CDVAE/DiffCSP .pt: torch-saved dicts of random shapes, dtypes and values -----------------------

DTYPES = ["float64", "float32", "float16", "int64", "int32", "int8", "uint8", "bool", "complex64"]


@st.composite
def tensors(draw: st.DrawFn) -> Any:
    """A torch tensor (or a plain list, number, string) of a random shape and dtype."""
    import torch
    from hypothesis.extra import numpy as hnp

    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind in "iu":
        elements = st.integers(-2 if dtype.kind == "i" else 0, 6)
    elif dtype.kind == "f":
        elements = st.floats(width=dtype.itemsize * 8) | st.sampled_from([0.0, 1.0, 3.0, 90.0, 120.0, 180.0])
    else:
        elements = None
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    kind = draw(st.sampled_from(["tensor", "tensor", "list", "scalar", "text"]))
    if kind == "list":
        return array.tolist()
    if kind == "scalar":
        return draw(st.integers(-3, 3) | st.floats() | st.none())
    if kind == "text":
        return draw(st.text(max_size=5) | st.lists(st.text(max_size=2), max_size=3))
    return torch.from_numpy(np.ascontiguousarray(array))


@st.composite
def eval_layouts(draw: st.DrawFn) -> dict[str, Any]:
    """The eval_gen.pt keys with consistent shapes (CDVAE's E x N, or DiffCSP's N) and plausible
    values, then often one key changed: another dtype, a NaN, dropped, or replaced by anything."""
    import torch

    n_evals, n_crystals = draw(st.integers(1, 2)), draw(st.integers(0, 3))
    counts = draw(st.lists(st.integers(1, 6), min_size=n_crystals, max_size=n_crystals))
    total = sum(counts)
    real = {"min_value": 0.0, "max_value": 1.0, "allow_nan": False}
    values = {
        "frac_coords": np.array(draw(st.lists(st.floats(**real), min_size=3 * total, max_size=3 * total))),
        "num_atoms": np.array(counts, dtype=np.int64),
        "atom_types": np.array(draw(st.lists(st.integers(1, 94), min_size=total, max_size=total)), dtype=np.int64),
        "lengths": np.array(draw(st.lists(st.floats(2.0, 9.0), min_size=3 * n_crystals, max_size=3 * n_crystals))),
        "angles": np.array(draw(st.lists(st.floats(55.0, 125.0), min_size=3 * n_crystals, max_size=3 * n_crystals))),
    }
    shapes = {"frac_coords": (total, 3), "num_atoms": (n_crystals,), "atom_types": (total,)}
    shapes |= {"lengths": (n_crystals, 3), "angles": (n_crystals, 3)}
    lead = draw(st.sampled_from([(), (n_evals,)]))  # DiffCSP, or CDVAE's eval dimension
    layout: dict[str, Any] = {
        key: torch.from_numpy(np.broadcast_to(v.reshape(shapes[key]), (*lead, *shapes[key])).copy())
        for key, v in values.items()
    }
    change = draw(st.sampled_from(["none", "none", "dtype", "nan", "drop", "replace", "counts"]))
    key = draw(st.sampled_from(sorted(layout)))
    if change == "dtype":
        layout[key] = layout[key].to(getattr(torch, draw(st.sampled_from(DTYPES))))
    elif change == "nan" and layout[key].is_floating_point() and layout[key].numel():
        layout[key].view(-1)[draw(st.integers(0, layout[key].numel() - 1))] = draw(
            st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, 1e30])
        )
    elif change == "drop":
        del layout[key]
    elif change == "replace":
        layout[key] = draw(tensors())
    elif change == "counts" and n_crystals:
        layout["num_atoms"] = layout["num_atoms"].clone()
        layout["num_atoms"].view(-1)[0] = draw(st.sampled_from([0, -1, 7, 2**40]))
    return layout


def torch_saved(obj: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


PT_OBJECTS = (
    eval_layouts()
    | st.dictionaries(st.sampled_from(["frac_coords", "num_atoms", "atom_types", "lengths", "angles", "x"]), tensors())
    | tensors()
    | st.lists(tensors(), max_size=2)
)


@FUZZ
@given(obj=PT_OBJECTS, data=st.data())
def test_read_bytes_on_torch_saved_objects(obj: Any, data: st.DataObject) -> None:
    saved = data.draw(damaged(torch_saved(obj)))
    check_records(read(saved, data.draw(st.sampled_from(["eval_gen.pt", "x.pth", "upload"])), text=False))


@FUZZ
@given(data=st.binary(max_size=2000))
def test_parse_pt_on_random_bytes(data: bytes) -> None:
    check_items(formats.parse_pt(data, name="x.pt", max_atoms=MAX_ATOMS))


# --- validate_structure on any cell -----------------------------------------------------------------

FINITE = st.floats(-20, 20, allow_nan=False)
EXTREME = st.sampled_from([0.0, 1e-9, -1e-9, 1e3, -1e3, 1e6, 1e308, float("nan"), float("inf"), -float("inf")])
FAR = st.sampled_from([1e-9, -1e-9, 50.0, -50.0, 1e6, -1e12, float("nan"), float("inf")])
SPECIES = st.sampled_from(["Si", "Na", "Cl", "O", "H", "X0+", {"Fe": 0.5}, {"Fe": 0.5, "Ni": 0.5}, {"O": 1.0}])


@st.composite
def any_structures(draw: st.DrawFn) -> Structure:
    matrix = draw(st.lists(st.lists(FINITE | EXTREME, min_size=3, max_size=3), min_size=3, max_size=3))
    n = draw(st.integers(1, 8))
    coords = draw(st.lists(st.lists(st.floats(-1.5, 1.5) | FAR, min_size=3, max_size=3), min_size=n, max_size=n))
    species = draw(st.lists(SPECIES, min_size=n, max_size=n))
    try:
        return Structure(Lattice(matrix), species, coords)
    except Exception:  # pymatgen refuses some inputs: no structure to validate
        assume(False)
        raise


@FUZZ
@given(
    structure=any_structures(),
    max_atoms=st.integers(1, 10),
    allowed=st.none() | st.frozensets(st.sampled_from(["Si", "Na", "Cl", "O", "H", "Fe", "Ni"])),
)
def test_validate_structure_on_any_cell(structure: Structure, max_atoms: int, allowed: frozenset[str] | None) -> None:
    error = call(validate_structure, structure, max_atoms=max_atoms, allowed_elements=allowed)
    assert error is None or (check_error(error) is None)


# --- the bugs these properties found, as regression tests ------------------------------------------


@pytest.mark.parametrize("filename, compress", [("x.cif.bz2", bz2.compress), ("x.cif.xz", lzma.compress)])
def test_bz2_and_xz_files_are_read(filename: str, compress: Any) -> None:
    records = read_bytes(compress((EXAMPLES / "Si_diamond.cif").read_bytes()), filename)
    assert [r.ok for r in records] == [True]


def _deflate_corrupted() -> dict[str, bytes]:
    cif = (EXAMPLES / "Si_diamond.cif").read_bytes()
    gz = bytearray(gzip.compress(cif, mtime=0))
    gz[20] ^= 0xFF  # inside the deflate stream: the gzip header is intact
    zipped = bytearray(_zip([("a.cif", cif)], zipfile.ZIP_DEFLATED))
    zipped[40] ^= 0xFF  # inside a.cif's deflate data: the zip directory is intact
    return {"x.cif.gz": bytes(gz), "x.zip": bytes(zipped)}


@pytest.mark.parametrize("filename", ["x.cif.gz", "x.zip"])
def test_corrupt_deflate_data_is_a_parse_error(filename: str) -> None:
    records = read_bytes(_deflate_corrupted()[filename], filename)
    assert records[0].error is not None and records[0].error.code == "parse_error"


def test_pt_with_text_cell_lengths_is_a_parse_error() -> None:
    layout = {
        "frac_coords": [[0.0, 0.0, 0.0]],
        "num_atoms": [1],
        "atom_types": [14],
        "lengths": [["a", "b", "c"]],
        "angles": [[90.0, 90.0, 90.0]],
    }
    records = read_bytes(torch_saved(layout), "eval_gen.pt")
    assert [r.error.code if r.error else "ok" for r in records] == ["parse_error"]


def test_extxyz_negative_atom_count_is_a_parse_error() -> None:
    records = read_bytes(b"-5\n", "x.extxyz")
    assert [r.error.code if r.error else "ok" for r in records] == ["parse_error"]


def test_extxyz_atom_count_minus_two_terminates() -> None:
    child = run_isolated(
        "from workers.screening.ingest.read import read_bytes\n"
        "print([r.error.code for r in read_bytes(b'-2\\n', 'x.extxyz')])\n"
    )
    assert child.returncode == 0 and child.stdout.strip() == "['parse_error']", child.stderr[-500:]


def test_far_out_coordinate_is_read_without_exhausting_memory() -> None:
    poscar = b"Si2\n1.0\n5 0 0\n0 5 0\n0 0 5\nSi\n2\ndirect\n0 0 0\n1000000 0.25 0.25\n"
    child = run_isolated(
        "from workers.screening.ingest.read import read_bytes\n"
        f"print([r.error.code if r.error else 'ok' for r in read_bytes({poscar!r}, 'POSCAR')])\n"
    )
    assert child.returncode == 0 and set(ast.literal_eval(child.stdout)) <= CODES | {"ok"}, child.stderr[-500:]


def test_lattice_with_a_huge_component_is_an_error() -> None:
    poscar = b"Si\n1.0\n3.3 0 1.9\n1.1 3.1 1e308\n0 0 3.8\nSi\n1\ndirect\n0 0 0\n"
    child = run_isolated(  # isolated: once LLL passes, the neighbour search may allocate without bound
        "from workers.screening.ingest.read import read_bytes\n"
        f"print([r.error.code if r.error else 'ok' for r in read_bytes({poscar!r}, 'POSCAR')])\n"
    )
    assert child.returncode == 0 and set(ast.literal_eval(child.stdout)) <= CODES, child.stderr[-500:]


def test_csv_with_a_bad_header_is_an_error() -> None:
    records = read_bytes(b"a\rb", "x.csv")
    assert [r.error.code if r.error else "ok" for r in records] == ["parse_error"]


def test_record_names_are_unique() -> None:
    cif = (EXAMPLES / "Si_diamond.cif").read_text()
    body = cif[cif.index("\n", cif.index("data_")) :]
    records = read_bytes(("data_a#2" + body + "data_a" + body + "data_a" + body).encode(), "f.cif")
    names = [r.name for r in records]
    assert len(set(names)) == len(names), names
