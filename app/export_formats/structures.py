"""The exports of structures with their verdicts, one candidate after another: `extxyz` (ase's
multi-frame extended XYZ), `jsonl` (a JSON object per line) and `pymatgen-json` (a JSON list of
Structure dicts that `monty.serialization.loadfn` reads back as Structures)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from app.export_formats.records import ExportRecord, get_flat_fields, get_record_json, get_structure

if TYPE_CHECKING:
    from ase import Atoms

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a newline in a comment-line value would end the frame's header


def get_atoms(record: ExportRecord) -> Atoms:
    """The exported structure as ase Atoms, its info the record's flat fields (None ones left out:
    extxyz has no null)."""
    from ase import Atoms

    structure = get_structure(record)
    atoms = Atoms(
        numbers=structure.atomic_numbers,
        cell=structure.lattice.matrix,
        scaled_positions=structure.frac_coords,
        pbc=True,
    )
    for key, value in get_flat_fields(record).items():
        if value is not None:
            atoms.info[key] = _CONTROL.sub(" ", value) if isinstance(value, str) else value
    return atoms


def write_extxyz(records: Iterable[ExportRecord], out: IO[bytes]) -> None:
    """One extended-XYZ frame per candidate (Cartesian positions in Å, the lattice, pbc), the
    verdict fields in its comment line; `ase.io.read(path, index=":")` reads them back."""
    import ase.io

    for record in records:
        frame = io.StringIO()
        ase.io.write(frame, get_atoms(record), format="extxyz")
        out.write(frame.getvalue().encode("utf-8"))


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")


def write_jsonl(records: Iterable[ExportRecord], out: IO[bytes]) -> None:
    """A JSON object per line: the API's candidate with its verdict, generator_version,
    worst_path_frequency_thz, structure_source and `structure` (pymatgen Structure.as_dict())."""
    for record in records:
        out.write(_dumps({**get_record_json(record), "structure": get_structure(record).as_dict()}) + b"\n")


def write_pymatgen_json(records: Iterable[ExportRecord], out: IO[bytes]) -> None:
    """A JSON list of pymatgen Structure.as_dict(), each with the record's JSON (as in `jsonl`,
    less the structure) in its `properties`: `loadfn` gives Structures, `Structure.from_dict` too."""
    out.write(b"[")
    separator = b"\n"
    for record in records:
        data = get_structure(record).as_dict()
        data["properties"] = {**(data.get("properties") or {}), **get_record_json(record)}
        out.write(separator + _dumps(data))
        separator = b",\n"
    out.write(b"\n]\n")
