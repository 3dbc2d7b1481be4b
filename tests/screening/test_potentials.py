"""The potential registry: names, offline MatterSim handling, `auto`, and ASE-convention outputs."""

from __future__ import annotations

import hashlib
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from tests.screening.mattersim_ckpt import write_random_mattersim_checkpoint
from workers.screening.potentials.registry import (
    POTENTIAL_NAMES,
    LoadedPotential,
    PotentialFallbackWarning,
    PotentialUnavailableError,
    clear_potential_cache,
    load_potential,
)

CACHE_SUBDIR = Path(".local/mattersim/pretrained_models")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty $HOME (no MatterSim weights) where any download or socket connection fails."""
    import mattersim.forcefield.potential as ms_potential
    import mattersim.utils.download_utils as ms_download

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(ms_potential, "download_checkpoint", no_network)
    monkeypatch.setattr(ms_download, "download_file", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    clear_potential_cache()
    yield home
    clear_potential_cache()


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_mattersim_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.pth")


def strained_si() -> Atoms:
    """Diamond Si, slightly compressed and sheared so every stress component is non-zero."""
    atoms = bulk("Si", "diamond", a=5.40)
    shear = np.array([[1.0, 0.02, 0.0], [0.02, 1.0, 0.01], [0.0, 0.01, 1.0]])
    atoms.set_cell(atoms.cell[:] @ shear, scale_atoms=True)
    return atoms


def finite_difference_stress(atoms: Atoms, calc: object, *, h: float = 1e-3) -> np.ndarray:
    """sigma_ij = (1/V) dE/d(eps_ij) by central differences on symmetric strains, eV/Å^3 (3x3)."""
    volume = atoms.get_volume()
    stress = np.zeros((3, 3))
    for i in range(3):
        for j in range(i, 3):
            energies = []
            for sign in (1.0, -1.0):
                eps = np.zeros((3, 3))
                eps[i, j] += sign * h / 2
                eps[j, i] += sign * h / 2
                strained = atoms.copy()
                strained.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
                strained.calc = calc
                energies.append(strained.get_potential_energy())
            stress[i, j] = stress[j, i] = (energies[0] - energies[1]) / (2 * h) / volume
    return stress


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        load_potential("mace-mp-0")
    for name in POTENTIAL_NAMES:
        assert name in str(err.value)


def test_checkpoint_path_is_only_for_mattersim(random_ckpt: Path) -> None:
    with pytest.raises(ValueError, match="only to MatterSim"):
        load_potential("sevennet-0", checkpoint=random_ckpt)


def test_missing_checkpoint_path_is_unavailable(offline_home: Path) -> None:
    with pytest.raises(PotentialUnavailableError, match="not found"):
        load_potential("mattersim-v1.0.0-5m", checkpoint=offline_home / "nope.pth")


@pytest.mark.parametrize(
    ("name", "file_name"),
    [
        ("mattersim-v1.0.0-5m", "mattersim-v1.0.0-5M.pth"),
        ("mattersim-v1.0.0-1m", "mattersim-v1.0.0-1M.pth"),
    ],
)
def test_explicit_mattersim_without_weights_fails_with_how_to(offline_home: Path, name: str, file_name: str) -> None:
    with pytest.raises(PotentialUnavailableError) as err:
        load_potential(name, device="cpu")
    message = str(err.value)
    assert file_name in message
    assert "--potential-checkpoint" in message
    assert "Potential.from_checkpoint" in message
    assert not (offline_home / CACHE_SUBDIR / file_name).exists()


def test_mattersim_from_checkpoint_path(offline_home: Path, random_ckpt: Path) -> None:
    pot = load_potential("mattersim-v1.0.0-5m", device="cpu", checkpoint=random_ckpt)
    assert pot.info.name == "mattersim-v1.0.0-5m"
    assert pot.info.requested == "mattersim-v1.0.0-5m"
    assert pot.info.checkpoint == str(random_ckpt.resolve())
    assert pot.info.checkpoint_sha256 == sha256(random_ckpt)
    assert pot.info.version.startswith("mattersim ")
    assert pot.info.device == "cpu" and pot.info.warning is None
    assert pot.elements is not None and len(pot.elements) == 94
    assert {"H", "Si", "Pu"} <= pot.elements and "Am" not in pot.elements

    atoms = bulk("Si", "diamond", a=5.43).repeat(2)
    atoms.rattle(0.02, seed=1)
    atoms.calc = pot.calculator
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (16, 3) and np.isfinite(atoms.get_forces()).all()
    assert atoms.get_stress().shape == (6,) and np.isfinite(atoms.get_stress()).all()


def test_mattersim_stress_is_ase_convention(offline_home: Path, random_ckpt: Path) -> None:
    # Random weights give a tiny stress; compare its volumetric part, where float32 noise is small.
    pot = load_potential("mattersim-v1.0.0-5m", device="cpu", checkpoint=random_ckpt)
    atoms = strained_si()
    atoms.calc = pot.new_calculator()
    stress = atoms.get_stress(voigt=False)
    reference = finite_difference_stress(atoms, pot.new_calculator(), h=1e-2)
    assert abs(np.trace(stress)) > 1e-5  # a signal to compare, not noise
    assert np.trace(stress) == pytest.approx(np.trace(reference), rel=0.02)


def test_auto_without_mattersim_falls_back_to_sevennet_with_warning(offline_home: Path) -> None:
    with pytest.warns(PotentialFallbackWarning, match="--potential-checkpoint"):
        pot = load_potential("auto", device="cpu")
    assert pot.info.name == "sevennet-l3i5"
    assert pot.info.requested == "auto"
    assert pot.info.warning is not None and "MatterSim" in pot.info.warning
    assert "sevennet-l3i5" in pot.info.warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", PotentialFallbackWarning)  # once per process, not per call
        assert load_potential("auto", device="cpu") is pot
    # The explicit name shares the model but carries no warning.
    explicit = load_potential("sevennet-l3i5", device="cpu")
    assert explicit.info.warning is None and explicit.info.requested == "sevennet-l3i5"
    assert explicit.info.checkpoint_sha256 == pot.info.checkpoint_sha256


def test_auto_uses_mattersim_from_its_cache_folder(offline_home: Path) -> None:
    cache = offline_home / CACHE_SUBDIR
    ckpt = write_random_mattersim_checkpoint(cache / "mattersim-v1.0.0-5M.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PotentialFallbackWarning)
        pot = load_potential("auto", device="cpu")
    assert pot.info.name == "mattersim-v1.0.0-5m"
    assert pot.info.requested == "auto" and pot.info.warning is None
    assert pot.info.checkpoint == "mattersim-v1.0.0-5M.pth"
    assert pot.info.checkpoint_sha256 == sha256(ckpt)
    explicit = load_potential("mattersim-v1.0.0-5m", device="cpu")
    assert explicit.info.checkpoint_sha256 == sha256(ckpt)
    # The 1M model is a different file and is still missing.
    with pytest.raises(PotentialUnavailableError):
        load_potential("mattersim-v1.0.0-1m", device="cpu")


def test_cache_returns_the_same_object() -> None:
    import torch

    first = load_potential("sevennet-0", device="auto")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert first.info.device == device
    assert load_potential("sevennet-0", device=device) is first
    assert isinstance(first, LoadedPotential)
    fresh = first.new_calculator()
    assert fresh is not first.calculator
    a, b = bulk("Si"), bulk("Si")
    a.calc, b.calc = first.calculator, fresh
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)


@pytest.mark.parametrize(
    ("name", "package", "n_elements"),
    [("sevennet-0", "sevenn", 89), ("chgnet-0.3.0", "chgnet", 94)],
)
def test_real_potentials_on_silicon(name: str, package: str, n_elements: int) -> None:
    pot = load_potential(name, device="cpu")
    assert pot.info.version.startswith(package + " ")
    assert pot.info.checkpoint.startswith(package + ":")
    assert len(pot.info.checkpoint_sha256) == 64
    assert pot.elements is not None and len(pot.elements) == n_elements and "Si" in pot.elements

    perfect = bulk("Si", "diamond", a=5.43).repeat(2)
    perfect.calc = pot.new_calculator()
    assert np.abs(perfect.get_forces()).max() < 1e-3  # every atom is an inversion centre

    rattled = perfect.copy()
    rattled.rattle(0.05, seed=2)
    rattled.calc = pot.new_calculator()
    forces = rattled.get_forces()
    assert np.isfinite(forces).all() and 0.05 < np.abs(forces).max() < 10
    assert np.abs(forces.sum(axis=0)).max() < 1e-3  # no net force from a conservative model

    atoms = strained_si()
    atoms.calc = pot.new_calculator()
    stress = atoms.get_stress(voigt=False)
    assert np.abs(stress).max() > 3e-3  # ~0.5 GPa: a real signal, so sign and units are tested
    np.testing.assert_allclose(stress, finite_difference_stress(atoms, pot.new_calculator()), atol=2e-4)


@pytest.mark.slow
def test_screen_one_structure_with_random_mattersim(offline_home: Path, random_ckpt: Path) -> None:
    """End to end through the pipeline: provenance names MatterSim and the file that ran."""
    from typing import get_args

    from pymatgen.core import Lattice, Structure

    from workers.screening.pipeline import screen_structures
    from workers.screening.protocols import get_protocol
    from workers.screening.types import ScreeningResult, StructureRecord, Verdict

    silicon = Structure(
        Lattice.cubic(5.43), ["Si"] * 8,
        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
         [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75], [0.25, 0.75, 0.75]],
    )  # fmt: skip
    record = StructureRecord(name="si.cif", source="si.cif", index=0, structure=silicon)
    # Random weights: keep the relax short and skip the larger confirmation supercell.
    protocol = get_protocol("default", relax_steps_per_cycle=50, relax_max_cycles=1, confirm_incommensurate=False)
    pot = load_potential("mattersim-v1.0.0-5m", device="cpu", checkpoint=random_ckpt)

    seen: list[ScreeningResult] = []
    (result,) = screen_structures([record], protocol=protocol, potential=pot, progress=seen.append)

    assert isinstance(result, ScreeningResult)
    assert [r.name for r in seen] == ["si.cif"]
    assert result.name == "si.cif"
    assert result.verdict in get_args(Verdict)
    # Any verdict is physics of random weights; "failed" would mean the pipeline broke on MatterSim.
    assert result.verdict != "failed", result.reason
    assert result.provenance.potential.name.startswith("mattersim")
    assert result.provenance.potential.checkpoint_sha256 == sha256(random_ckpt)
    assert result.provenance.protocol == "default"
