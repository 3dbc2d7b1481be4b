"""SevenNet-l3i5: a named potential from the sevenn wheel, and what `auto` runs without MatterSim."""

from __future__ import annotations

import hashlib
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from tests.screening.test_potentials import finite_difference_stress, strained_si
from workers.screening.potentials.registry import (
    AUTO_FALLBACK,
    POTENTIAL_NAMES,
    PotentialFallbackWarning,
    PotentialUnavailableError,
    clear_potential_cache,
    load_potential,
    resolved_name,
)

CHECKPOINT_LABEL = "sevenn:SevenNet_l3i5/checkpoint_l3i5.pth"


@pytest.fixture
def no_mattersim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $HOME (no MatterSim weights) where any socket connection fails: nothing downloads."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    clear_potential_cache()
    yield tmp_path
    clear_potential_cache()


def _wheel_file() -> Path:
    import sevenn

    return Path(sevenn.__file__).resolve().parent / "pretrained_potentials" / "SevenNet_l3i5" / "checkpoint_l3i5.pth"


def test_l3i5_is_a_name_and_the_offline_fallback(no_mattersim: Path) -> None:
    assert "sevennet-l3i5" in POTENTIAL_NAMES and "sevennet-0" in POTENTIAL_NAMES
    assert AUTO_FALLBACK == "sevennet-l3i5"
    assert resolved_name("auto") == "sevennet-l3i5"
    assert resolved_name("sevennet-l3i5") == "sevennet-l3i5" and resolved_name("sevennet-0") == "sevennet-0"


def test_auto_without_mattersim_runs_l3i5_with_the_warning_stored(no_mattersim: Path) -> None:
    with pytest.warns(PotentialFallbackWarning, match="--potential-checkpoint"):
        auto = load_potential("auto", device="cpu")
    info = auto.info
    assert info.name == "sevennet-l3i5" and info.requested == "auto"
    assert info.warning is not None and "'sevennet-l3i5'" in info.warning and "MatterSim" in info.warning
    # provenance names the file inside the wheel and hashes what runs
    assert info.checkpoint == CHECKPOINT_LABEL
    assert info.checkpoint_sha256 == hashlib.sha256(_wheel_file().read_bytes()).hexdigest()
    assert info.version.startswith("sevenn ") and info.execution == "eager"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PotentialFallbackWarning)  # once per process
        explicit = load_potential("sevennet-l3i5", device="cpu")
    assert explicit.info.warning is None and explicit.info.requested == "sevennet-l3i5"
    assert explicit.info.checkpoint_sha256 == info.checkpoint_sha256
    other = load_potential("sevennet-0", device="cpu")
    assert other.info.checkpoint_sha256 != info.checkpoint_sha256 and other.info.warning is None


def test_l3i5_forces_and_stress_are_ase_convention() -> None:
    pot = load_potential("sevennet-l3i5", device="cpu")
    assert pot.elements is not None and len(pot.elements) == 89 and "Si" in pot.elements
    perfect = bulk("Si", "diamond", a=5.43).repeat(2)
    perfect.calc = pot.new_calculator()
    assert np.abs(perfect.get_forces()).max() < 1e-3  # every atom is an inversion centre
    atoms = strained_si()
    atoms.calc = pot.new_calculator()
    stress = atoms.get_stress(voigt=False)
    assert np.abs(stress).max() > 3e-3
    np.testing.assert_allclose(stress, finite_difference_stress(atoms, pot.new_calculator()), atol=2e-4)


def test_a_missing_sevennet_file_is_unavailable_not_downloaded(
    no_mattersim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sevenn.util

    def missing(name: str) -> str:
        raise FileNotFoundError(f"/nowhere/{name}.pth")

    monkeypatch.setattr(sevenn.util, "pretrained_name_to_path", missing)
    with pytest.raises(PotentialUnavailableError, match="'7net-l3i5' is not in the installed sevenn wheel"):
        load_potential("sevennet-l3i5", device="cpu")


@pytest.mark.slow
def test_screen_silicon_with_l3i5(examples_dir: Path) -> None:
    """Diamond Si (2-atom primitive cell) under the `default` protocol: stable, and the verdict says
    l3i5 ran."""
    from workers.screening.ingest.read import read_structures
    from workers.screening.pipeline import screen_structures
    from workers.screening.protocols import DEFAULT

    (record,) = read_structures(examples_dir / "Si_diamond.cif")
    pot = load_potential("sevennet-l3i5", device="cpu", compile="off")
    (result,) = screen_structures([record], protocol=DEFAULT, potential=pot)
    assert result.verdict == "stable", (result.reason, result.worst_mode)
    assert result.born_stable is True and result.relax.converged
    assert result.phonons.n_supercell_atoms == 64
    potential = result.provenance.potential
    assert potential.name == "sevennet-l3i5" and potential.requested == "sevennet-l3i5"
    assert potential.checkpoint == CHECKPOINT_LABEL and potential.warning is None
    assert potential.execution == "eager"
