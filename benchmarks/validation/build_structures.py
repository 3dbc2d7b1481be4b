"""Write benchmarks/validation/<id>.cif for every crystal in crystals.yaml, and check each one.

    python benchmarks/validation/build_structures.py [--data ../shared/data] [--only ID,...] [--check]

A crystal's `structure` in the manifest is one of: `spacegroup` + `lattice` (a, b, c, alpha,
beta, gamma in Å and degrees) + `species` + `coords` (Wyckoff positions, fractional); `cell` (the
same six lattice parameters) + P1 `species`/`coords`; or `file` (a POSCAR or phonopy yaml under the
shared data folder). The CIF is written in P1 by pymatgen, as a generator would write it. Every
structure must have the manifest's formula, atom count and space group (spglib at symprec 0.01 and
0.1), no two atoms closer than 1.2 Å, and read as one structure through the project's own reader.
`--check` checks the CIFs already written without rewriting them. The program lives in this folder
because it is part of the data's provenance; the project's readers skip .py files in a folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "crystals.yaml"
ROOT = HERE.parents[1]
MIN_DISTANCE_ANGSTROM = 1.2  # shortest bond in the set is ~1.6 Å (Si-O); 1.2 catches overlaps


def load_manifest(path: Path = MANIFEST) -> list[dict[str, Any]]:
    """The crystals of the manifest, in file order."""
    return list(yaml.safe_load(path.read_text(encoding="utf-8"))["crystals"])


def build_structure(recipe: dict[str, Any], *, data: Path) -> Any:
    """The pymatgen Structure a manifest `structure` block describes."""
    from pymatgen.core import Lattice, Structure

    if "file" in recipe:
        path = data / recipe["file"]
        if ".yaml" in path.name:
            import phonopy
            from pymatgen.io.phonopy import get_pmg_structure

            structure = get_pmg_structure(phonopy.load(path, produce_fc=False).unitcell)
        else:
            structure = Structure.from_file(path)
    elif "spacegroup" in recipe:
        lattice = Lattice.from_parameters(*recipe["lattice"])
        structure = Structure.from_spacegroup(recipe["spacegroup"], lattice, recipe["species"], recipe["coords"])
    else:
        lattice = Lattice.from_parameters(*recipe["cell"])
        structure = Structure(lattice, recipe["species"], recipe["coords"])
    if recipe.get("primitive"):
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        structure = SpacegroupAnalyzer(structure, symprec=0.01).get_primitive_standard_structure()
    return structure


def check_structure(structure: Any, crystal: dict[str, Any]) -> list[str]:
    """What is wrong with `structure` against its manifest row (empty when nothing)."""
    import numpy as np
    from pymatgen.core import Composition
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    problems = []
    if structure.composition.reduced_composition != Composition(crystal["formula"]).reduced_composition:
        problems.append(f"formula {structure.composition.reduced_formula} != {crystal['formula']}")
    if len(structure) != crystal["n_atoms"]:
        problems.append(f"{len(structure)} atoms != {crystal['n_atoms']}")
    for symprec in (0.01, 0.1):
        number = SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number()
        if number != crystal["spacegroup_number"]:
            problems.append(f"space group {number} at symprec {symprec} != {crystal['spacegroup_number']}")
    distances = structure.distance_matrix + np.eye(len(structure)) * 1e9
    if len(structure) > 1 and distances.min() < MIN_DISTANCE_ANGSTROM:
        problems.append(f"atoms {distances.min():.2f} Å apart")
    return problems


def check_reader(path: Path) -> list[str]:
    """Problems the project's own reader finds with the CIF at `path` (empty when none)."""
    sys.path.insert(0, str(ROOT))
    from workers.screening.ingest.read import read_structures

    records = read_structures(path)
    if len(records) != 1:
        return [f"reader found {len(records)} structures"]
    if not records[0].ok:
        error = records[0].error
        return [f"reader: {error.code if error else '?'} {error.message if error else ''}"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="shared data folder")
    parser.add_argument("--only", default="", help="comma-separated ids")
    parser.add_argument("--check", action="store_true", help="check the CIFs already written; write nothing")
    args = parser.parse_args(argv)

    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    only = {s for s in args.only.split(",") if s}
    failed = 0
    for crystal in load_manifest():
        if only and crystal["id"] not in only:
            continue
        target = HERE / f"{crystal['id']}.cif"
        if args.check:
            structure = Structure.from_file(target)
            problems = check_structure(structure, crystal) + check_reader(target)
        else:
            structure = build_structure(crystal["structure"], data=args.data)
            with tempfile.TemporaryDirectory() as tmp:  # check before replacing a good file
                staged = Path(tmp) / target.name
                CifWriter(structure).write_file(staged)
                structure = Structure.from_file(staged)
                problems = check_structure(structure, crystal) + check_reader(staged)
                if not problems:
                    staged.replace(target)
        failed += bool(problems)
        status = "; ".join(problems) if problems else "ok"
        print(f"{crystal['id']:26s} {structure.composition.reduced_formula:9s} {len(structure):3d} atoms  {status}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
