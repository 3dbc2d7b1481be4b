"""Parsers for each structure file format: text or bytes in, (name, Structure or IngestError) out."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pymatgen.core import Lattice, Structure

from workers.screening.types import IngestError

if TYPE_CHECKING:
    from ase import Atoms

Item = tuple[str, "Structure | IngestError"]

# CDVAE's own validity floor (compute_metrics.Crystal): below this a cell is not a crystal.
MIN_VOLUME_A3 = 0.1
_PT_KEYS = ("frac_coords", "num_atoms", "atom_types", "lengths", "angles")
CIF_BLOCK = re.compile(r"^[ \t]*data_(\S*)", re.IGNORECASE | re.MULTILINE)


def _short(exc: BaseException | str, limit: int = 300) -> str:
    """One line of an exception's message: parser errors can be pages long (torch's are)."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def too_many_atoms(n: int, max_atoms: int) -> IngestError:
    return IngestError("too_many_atoms", f"{n} sites, more than the limit of {max_atoms}")


def parse_error(exc: BaseException | str, caught: list[warnings.WarningMessage] | None = None) -> IngestError:
    # pymatgen explains a failed CIF only in warnings; the exception itself just says "no structures".
    reasons = [_short(w.message) for w in caught or [] if "deprecat" not in str(w.message).lower()]
    message = _short(exc)
    if reasons:
        message += " (" + "; ".join(dict.fromkeys(reasons)) + ")"
    return IngestError("parse_error", message)


MAX_SYMMETRY_OPERATIONS = 192  # the most any space group has (F m -3 m in its conventional cell)
_SITE_TOLERANCE = 1e-3  # fractional: images closer than this are one site (pymatgen merges at 1e-4)


def _cif_atom_count(block_text: str, *, max_atoms: int) -> IngestError | None:
    """Refuse a CIF block whose cell holds more than `max_atoms` once its symmetry is applied,
    before pymatgen builds it (its site merging grows with the square of the expanded count:
    60 general rows in F m -3 m took minutes).

    Linear in the text: the rows are counted first (each is at least one atom), the operations
    are capped at what a space group can have, then each row's orbit is counted with numpy.
    """
    from pymatgen.io.cif import CifBlock, CifParser, str2float

    data = CifBlock.from_str(block_text).data
    rows = 0
    for key in ("_atom_site_fract_x", "_atom_site_cartn_x", "_atom_site_Cartn_x", "_atom_site_label"):
        if key in data:
            value = data[key]
            rows = len(value) if isinstance(value, list) else 1
            break
    if rows > max_atoms:
        return IngestError("too_many_atoms", f"{rows} atom sites listed, more than the limit of {max_atoms}")
    for key in (
        "_symmetry_equiv_pos_as_xyz",
        "_symmetry_equiv_pos_as_xyz_",
        "_space_group_symop_operation_xyz",
        "_space_group_symop_operation_xyz_",
    ):
        listed = data.get(key)
        if isinstance(listed, list) and len(listed) > MAX_SYMMETRY_OPERATIONS:
            return IngestError(
                "parse_error",
                f"{len(listed)} symmetry operations listed; no space group has more than {MAX_SYMMETRY_OPERATIONS}",
            )
    fract = [data.get(f"_atom_site_fract_{axis}") for axis in "xyz"]
    if rows <= 1:
        return None  # one row: at most 192 atoms, cheap for pymatgen, and the limit is checked again after
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ops = CifParser.from_str(block_text, check_cif=False).get_symops(CifBlock.from_str(block_text))
    except Exception:  # noqa: BLE001 - pymatgen's own parse reports what is wrong with the block
        return None
    if len(ops) > MAX_SYMMETRY_OPERATIONS:
        return IngestError(
            "parse_error", f"{len(ops)} symmetry operations; no space group has more than {MAX_SYMMETRY_OPERATIONS}"
        )
    columns = [column for column in fract if isinstance(column, list)]
    if len(ops) <= 1 or len(columns) != 3:
        return None  # no expansion (or Cartesian rows): the row count was the atom count
    try:
        coords = np.array([[str2float(v) for v in column] for column in columns], dtype=np.float64).T  # (rows, 3)
    except (ValueError, TypeError):
        return None
    rotations = np.array([op.rotation_matrix for op in ops], dtype=np.float64)  # (k, 3, 3)
    translations = np.array([op.translation_vector for op in ops], dtype=np.float64)  # (k, 3)
    images = np.einsum("kij,rj->rki", rotations, coords) + translations  # (rows, k, 3)
    images -= np.floor(images)
    atoms = 0
    for orbit in images:  # one row: k images, k x k distances
        delta = orbit[:, None, :] - orbit[None, :, :]
        delta -= np.round(delta)
        same = (np.abs(delta) < _SITE_TOLERANCE).all(axis=-1)
        atoms += int((~np.triu(same, k=1).any(axis=0)).sum())  # images with no earlier twin
        if atoms > max_atoms:
            return IngestError(
                "too_many_atoms",
                f"more than {max_atoms} atoms once the {len(ops)} symmetry operations are applied to the "
                f"{rows} listed sites; the limit is {max_atoms}",
            )
    return None


def parse_cif(text: str, *, name: str, max_atoms: int) -> Iterator[Item]:
    """Every data block of a CIF; names get `:blockname` only when there are several blocks."""
    from pymatgen.io.cif import CifParser

    starts = list(CIF_BLOCK.finditer(text))
    if not starts:
        yield name, IngestError("parse_error", "no data_ block found: not a CIF")
        return
    bounds = [m.start() for m in starts] + [len(text)]
    multi = len(starts) > 1
    for i, match in enumerate(starts):
        chunk = text[bounds[i] : bounds[i + 1]]
        block_name = f"{name}:{match.group(1) or i}" if multi else name
        try:
            # Count before building: pymatgen merges sites pairwise, far too slow for huge cells.
            refused = _cif_atom_count(chunk, max_atoms=max_atoms)
            if refused is not None:
                yield block_name, refused
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    structures = CifParser.from_str(chunk, check_cif=False).parse_structures(
                        primitive=False, on_error="raise"
                    )
                except Exception as exc:  # noqa: BLE001 - any parser failure is this block's error
                    yield block_name, parse_error(exc, caught)
                    continue
        except Exception as exc:  # noqa: BLE001
            yield block_name, parse_error(exc)
            continue
        if not structures:
            yield block_name, IngestError("parse_error", "CIF block holds no structure")
        else:
            yield block_name, structures[0]


def parse_poscar(text: str, *, name: str, max_atoms: int) -> Iterator[Item]:
    """A VASP POSCAR/CONTCAR (VASP 5 style, with a species line)."""
    from pymatgen.io.vasp import Poscar

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            lines = text.splitlines()
            species_line = lines[5].split() if len(lines) > 5 else []
            if species_line and all(tok.isdigit() for tok in species_line):
                # pymatgen would invent elements (H, He, ...) for a VASP 4 file: refuse instead.
                yield name, IngestError("parse_error", "POSCAR has no species line (VASP 4 format)")
                return
            fields = lines[6].split() if len(lines) > 6 else []
            counts = [int(tok) for tok in fields if tok.isdigit()]
            if sum(counts) > max_atoms:
                yield name, too_many_atoms(sum(counts), max_atoms)
                return
            poscar = Poscar.from_str(text, read_velocities=False)
        except Exception as exc:  # noqa: BLE001
            yield name, parse_error(f"not a readable POSCAR: {_short(exc)}", caught)
            return
    yield name, poscar.structure


def _frames(text: str) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Split an (ext)xyz file into frames by its atom-count lines: (n_atoms, lines or None, error)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].strip())
        except ValueError:
            n = -1
        if n < 0:
            yield 0, None, f"line {i + 1}: expected an atom count, found {lines[i][:60]!r}"
            return
        block = lines[i : i + n + 2]
        i += n + 2
        if len(block) < n + 2:
            yield n, None, f"frame truncated: {n} atoms announced, {len(block) - 2} lines found"
            return
        yield n, block, None


def parse_extxyz(text: str, *, name: str, max_atoms: int) -> Iterator[Item]:
    """Frames of an extended XYZ file (`Lattice=` required); names get `#frame` when several."""
    from ase.io import read as ase_read

    frames = list(_frames(text))
    multi = len(frames) > 1
    for index, (n, block, error) in enumerate(frames):
        frame_name = f"{name}#{index}" if multi else name
        if n > max_atoms:
            yield frame_name, too_many_atoms(n, max_atoms)
            continue
        if block is None:
            yield frame_name, IngestError("parse_error", error or "unreadable frame")
            continue
        try:
            # no index: the last (here the only) frame, one Atoms
            atoms = cast("Atoms", ase_read(io.StringIO("\n".join(block) + "\n"), format="extxyz"))
        except Exception as exc:  # noqa: BLE001
            yield frame_name, parse_error(exc)
            continue
        if atoms.cell.rank < 3 or not atoms.pbc.all():
            yield (
                frame_name,
                IngestError("degenerate_cell", "frame has no periodic 3D cell (Lattice= missing?)"),
            )
            continue
        try:
            yield (
                frame_name,
                Structure(
                    Lattice(atoms.cell.array),
                    atoms.get_chemical_symbols(),
                    atoms.positions,
                    coords_are_cartesian=True,
                ),
            )
        except Exception as exc:  # noqa: BLE001
            yield frame_name, parse_error(exc)


def _structure_from_dict(d: Any, *, max_atoms: int) -> Structure | IngestError:
    if not isinstance(d, dict) or "lattice" not in d or "sites" not in d:
        return IngestError("parse_error", "not a pymatgen Structure dict (needs 'lattice' and 'sites')")
    if d.get("@class", "Structure") != "Structure":
        return IngestError("unsupported_format", f"pymatgen {d.get('@class')} is not a periodic Structure")
    if isinstance(d["sites"], list) and len(d["sites"]) > max_atoms:
        return too_many_atoms(len(d["sites"]), max_atoms)
    try:
        return Structure.from_dict(d)
    except Exception as exc:  # noqa: BLE001
        return parse_error(exc)


def parse_json(text: str, *, name: str, max_atoms: int) -> Iterator[Item]:
    """pymatgen JSON: one Structure.as_dict(), a list of them (or of {"structure": ...} docs), or a
    dict of name -> Structure dict."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        yield name, parse_error(exc)
        return
    if isinstance(obj, dict) and "sites" in obj:
        yield name, _structure_from_dict(obj, max_atoms=max_atoms)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            label = f"#{i}"
            if isinstance(item, dict) and "structure" in item:
                label = f":{item['material_id']}" if isinstance(item.get("material_id"), str) else label
                item = item["structure"]
            yield f"{name}{label}", _structure_from_dict(item, max_atoms=max_atoms)
    elif isinstance(obj, dict) and obj and all(isinstance(v, dict) and "sites" in v for v in obj.values()):
        for key, item in obj.items():
            yield f"{name}:{key}", _structure_from_dict(item, max_atoms=max_atoms)
    else:
        yield (
            name,
            IngestError("unsupported_format", "JSON is neither a pymatgen Structure nor a list of them"),
        )


def parse_csv(text: str, *, name: str, max_atoms: int) -> Iterator[Item]:
    """CSV with a `cif` (or `structure`, FlowMM's `relxed_structure`) column of CIF text or of a
    repr of Structure.as_dict(); rows are named by `material_id` when the column exists, else `#row`."""
    # CIF cells of large structures exceed csv's 128 KiB default field limit; the caller already
    # capped the whole text, so this only lifts a limit, never adds exposure.
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, len(text) + 1)))
    reader = csv.DictReader(io.StringIO(text))
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        yield name, parse_error(f"CSV header unreadable: {exc}")
        return
    fields = {f.strip().lower(): f for f in header if f is not None}
    column = next(
        (fields[c] for c in ("cif", "structure", "relaxed_structure", "relxed_structure") if c in fields),
        None,
    )
    if column is None:
        yield (
            name,
            IngestError("unsupported_format", f"CSV has no 'cif' column (columns: {sorted(fields)[:12]})"),
        )
        return
    id_column = fields.get("material_id")
    try:
        for row_no, row in enumerate(reader):
            row_id = (row.get(id_column) or "").strip() if id_column else ""
            row_name = f"{name}:{row_id}" if row_id else f"{name}#{row_no}"
            cell = (row.get(column) or "").strip()
            if not cell:
                yield row_name, IngestError("empty", f"row {row_no} has an empty '{column}' cell")
            elif cell.startswith("{"):
                try:
                    # A Python repr of Structure.as_dict() (CrystalFormer): literals only, never eval.
                    d = ast.literal_eval(cell)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                    yield row_name, parse_error(f"not a Python literal dict: {_short(exc)}")
                    continue
                yield row_name, _structure_from_dict(d, max_atoms=max_atoms)
            else:
                yield from parse_cif(cell, name=row_name, max_atoms=max_atoms)
    except csv.Error as exc:
        yield f"{name}#{reader.line_num}", parse_error(f"CSV unreadable from line {reader.line_num}: {exc}")


def _load_pt(data: bytes) -> Any:
    import argparse

    import torch

    # weights_only=True: tensors and plain containers only. CDVAE stores its CLI arguments as an
    # argparse.Namespace, the one extra class allowed; anything else is refused, never unpickled.
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def parse_pt(data: bytes, *, name: str, max_atoms: int) -> Iterator[Item]:
    """CDVAE/DiffCSP `eval_gen.pt` layout: per-crystal lengths/angles, concatenated atoms; with a
    leading eval dimension E (CDVAE, names `#e.i` when E > 1) or without (DiffCSP)."""
    try:
        obj = _load_pt(data)
    except Exception as exc:  # noqa: BLE001 - refusals by weights_only land here too
        yield name, IngestError("parse_error", f"cannot load .pt safely (weights_only): {_short(exc)}")
        return
    if not isinstance(obj, dict) or any(k not in obj for k in _PT_KEYS):
        keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        yield name, IngestError("unsupported_format", f".pt is not a CDVAE/DiffCSP eval layout (has {keys})")
        return
    try:
        arr = {k: _as_array(obj[k]) for k in _PT_KEYS}
        if arr["num_atoms"].ndim == 1:  # DiffCSP: no eval dimension
            arr = {k: v[None] for k, v in arr.items()}
        n_evals, n_crystals = arr["num_atoms"].shape
        num_atoms = arr["num_atoms"].astype(np.int64)
        total = arr["frac_coords"].shape[1]
        ok = (
            arr["frac_coords"].shape == (n_evals, total, 3)
            and arr["atom_types"].shape == (n_evals, total)
            and arr["lengths"].shape == (n_evals, n_crystals, 3)
            and arr["angles"].shape == (n_evals, n_crystals, 3)
            and bool((num_atoms.sum(axis=1) == total).all())
        )
    except Exception as exc:  # noqa: BLE001
        yield name, parse_error(f"malformed eval tensors: {_short(exc)}")
        return
    if not ok:
        shapes = {k: tuple(v.shape) for k, v in arr.items()}
        yield name, IngestError("parse_error", f"inconsistent eval tensor shapes {shapes}")
        return
    offsets = np.zeros((n_evals, n_crystals + 1), dtype=np.int64)
    offsets[:, 1:] = np.cumsum(num_atoms, axis=1)
    for e in range(n_evals):
        for i in range(n_crystals):
            crystal = f"{name}#{i}" if n_evals == 1 else f"{name}#{e}.{i}"
            yield crystal, _pt_crystal(arr, e, i, offsets[e, i], offsets[e, i + 1], max_atoms=max_atoms)


def _pt_crystal(
    arr: dict[str, np.ndarray], e: int, i: int, lo: int, hi: int, *, max_atoms: int
) -> Structure | IngestError:
    """One crystal, built as CDVAE's compute_metrics.Crystal does, with its validity rules."""
    n = hi - lo
    if n <= 0:
        return IngestError("empty", "crystal has no atoms")
    if n > max_atoms:
        return too_many_atoms(n, max_atoms)
    try:
        lengths = arr["lengths"][e, i].astype(float)
        angles = arr["angles"][e, i].astype(float)
    except (TypeError, ValueError) as exc:
        return parse_error(f"cell parameters are not numbers: {_short(exc)}")
    if not (np.isfinite(lengths).all() and np.isfinite(angles).all()):
        return IngestError("degenerate_cell", f"non-finite cell parameters {lengths.tolist()} {angles.tolist()}")
    if (lengths <= 0).any():
        return IngestError("degenerate_cell", f"non-positive lattice length {lengths.round(4).tolist()} Å")
    try:
        lattice = Lattice.from_parameters(*lengths, *angles)
        structure = Structure(lattice, arr["atom_types"][e, lo:hi].tolist(), arr["frac_coords"][e, lo:hi].astype(float))
    except Exception as exc:  # noqa: BLE001
        return parse_error(exc)
    if not structure.volume >= MIN_VOLUME_A3:
        return IngestError("degenerate_cell", f"cell volume {structure.volume:.3g} Å^3 below {MIN_VOLUME_A3}")
    return structure
