"""Dedup throughput: index real generator outputs, then time lookups (and the brute-force reference)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = (
    "diffcsp_mp20/DiffCSP_mp_20.pt",
    "diffcsp_mp20/DiffCSP++_mp_20.pt",
    "crystalformer_mp20/CrystalFormer_mp_20.csv.gz",
    "mp20_biternary/test.csv.gz",
    "mpts52/test.csv.gz",
)


def main() -> None:
    from workers.screening.dedup import DuplicateIndex, duplicate_index
    from workers.screening.ingest.read import read_structures
    from workers.screening.protocols import DEFAULT

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sources", type=int, default=len(SOURCES), help="use the first N sources")
    args = parser.parse_args()
    structures = [
        r.structure for src in SOURCES[: args.sources] for r in read_structures(args.data / src, max_atoms=1000) if r.ok
    ]
    queries, indexed = structures[: args.queries], structures[args.queries :]
    # the default protocol's rule, space-group check included
    index: DuplicateIndex[int] | None = duplicate_index(DEFAULT.dedup, symprec=DEFAULT.symprec)
    assert index is not None
    start = time.perf_counter()
    for i, s in enumerate(indexed):
        index.add(s, i)
    add_s = time.perf_counter() - start
    start = time.perf_counter()
    hits = sum(index.find(s) is not None for s in queries)
    find_s = time.perf_counter() - start
    print(f"indexed {len(index)} structures in {add_s:.1f} s ({len(index) / add_s:.0f} adds/s)")
    print(f"{len(queries)} lookups in {find_s:.1f} s: {len(queries) / find_s:.0f} lookups/s, {hits} duplicates")
    # the reference: one StructureMatcher.fit against every indexed structure of the same formula
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(primitive_cell=True, scale=False, attempt_supercell=False)
    by_formula: dict[str, list] = {}
    for s in indexed:
        by_formula.setdefault(s.composition.reduced_formula, []).append(s)
    # only queries that have same-formula company: elsewhere both answer "new" without comparing
    sample = [s for s in queries if by_formula.get(s.composition.reduced_formula)][:100]
    start = time.perf_counter()
    for s in sample:
        any(matcher.fit(s, other) for other in by_formula[s.composition.reduced_formula])
    brute = len(sample) / (time.perf_counter() - start)
    start = time.perf_counter()
    for s in sample:
        index.find(s)
    ours = len(sample) / (time.perf_counter() - start)
    print(
        f"{len(sample)} queries with same-formula structures indexed: index {ours:.0f} lookups/s, "
        f"reference (fit every same-formula structure) {brute:.1f} lookups/s; ratio {ours / brute:.1f}"
    )


if __name__ == "__main__":
    main()
