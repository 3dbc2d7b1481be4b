"""Workers store the force constants in the artifact store when the setting asks for them."""

from __future__ import annotations

import json
import lzma

import pytest
from ase.build import bulk

from models.artifacts import ArtifactStore
from workers.persistence import get_verdict_values
from workers.screening.physics.cells import to_pymatgen
from workers.screening.pipeline import screen_structures
from workers.screening.protocols import DEFAULT
from workers.screening.types import StructureRecord

pytestmark = pytest.mark.slow


def test_force_constants_written_before_the_row(tmp_path):
    from workers.screening.potentials.registry import load_potential

    record = StructureRecord(name="Si", source="t", index=0, structure=to_pymatgen(bulk("Si", "diamond", a=5.43)))
    (result,) = screen_structures(
        [record], protocol=DEFAULT, potential=load_potential("sevennet-0", device="cpu"), keep_force_constants=True
    )
    store = ArtifactStore(tmp_path)
    values = get_verdict_values(result, store=store, screening_id=7)
    path = values["result"]["files"]["force_constants"]
    assert path == "screenings/7/phonopy_params.yaml.xz"
    assert b"force_constants" in lzma.decompress(store.read_bytes(path))
    json.dumps(values["result"])  # the row stays plain JSON: no bytes in it
