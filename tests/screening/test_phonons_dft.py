"""Phonon plumbing against DFT force sets: our force constants, scans and verdicts vs phonopy's own."""

from __future__ import annotations

import numpy as np
import phonopy
import pytest

from workers.screening.physics import phonons, verdict
from workers.screening.protocols import DEFAULT, PHONONBENCH

CASES = {
    # name: (loader kwargs relative to shared/data, expected verdict)
    "NaCl": ({"phonopy_yaml": "phonopy_testdata/phonopy_params_NaCl-1.00.yaml.xz"}, "stable"),
    "SrTiO3": ({"phonopy_yaml": "phonopy_testdata/phonopy_SrTiO3.yaml.xz"}, "unstable"),
    "BaTe": ({"phonopy_yaml": "mdr_phonondb/mp-1000_BaTe.yaml.bz2"}, "stable"),
    "Al2O3": (
        {
            "phonopy_yaml": "phonopy_examples/Al2O3/phonopy_disp.yaml",
            "force_sets_filename": "phonopy_examples/Al2O3/FORCE_SETS",
        },
        "stable",
    ),
    "CaTiO3": (
        {
            "phonopy_yaml": "phonopy_examples/CaTiO3/phonopy_disp.yaml",
            "force_sets_filename": "phonopy_examples/CaTiO3/FORCE_SETS",
        },
        "unstable",
    ),
}


def _load(shared_data, name: str, *, produce_fc: bool) -> phonopy.Phonopy:
    kwargs = {k: str(shared_data / v) for k, v in CASES[name][0].items()}
    return phonopy.load(produce_fc=produce_fc, log_level=0, **kwargs)


def _ours(shared_data, name: str) -> phonopy.Phonopy:
    """The same DFT data, but force constants made by our code path from the raw forces."""
    ph = _load(shared_data, name, produce_fc=False)
    forces = np.array(ph.forces)
    assert forces.shape == (len(ph.displacements), len(ph.supercell), 3)
    phonons.produce_force_constants(ph, forces)
    return ph


def _supercell_in_primitive(ph: phonopy.Phonopy) -> np.ndarray:
    return np.rint(ph.supercell.cell @ np.linalg.inv(ph.primitive.cell)).astype(int)


def _scan(ph: phonopy.Phonopy, settings) -> verdict.ZoneReport:
    if settings.band_path == "seekpath":
        path = phonons.seekpath_band_path(ph, npoints=settings.band_npoints)
    else:
        path = phonons.phononbench_band_path(ph, npoints=settings.band_npoints)
    band = phonons.run_band_path(ph, path)
    qsets = [phonons.QSet("path", np.concatenate(band["qpoints"]), np.concatenate(band["frequencies"]))]
    smat = _supercell_in_primitive(ph)
    if settings.check_mesh:
        mesh = phonons.mesh_numbers(
            ph, spacing_inv_angstrom=settings.mesh_spacing_inv_angstrom, minimum=settings.mesh_min
        )
        qsets.append(phonons.run_mesh_frequencies(ph, mesh))
    if settings.check_commensurate:
        qsets.append(phonons.run_qpoint_frequencies(ph, phonons.commensurate_points(smat), where="commensurate"))
    return verdict.scan_modes(ph, qsets, supercell_matrix=smat, settings=settings)


@pytest.mark.parametrize("name", sorted(CASES))
def test_frequencies_equal_phonopys_own(shared_data, name):
    reference = _load(shared_data, name, produce_fc=True)
    reference.symmetrize_force_constants()
    ours = _ours(shared_data, name)
    rng = np.random.default_rng(0)
    qpoints = np.vstack([np.zeros(3), rng.random((20, 3)) - 0.5])
    reference.run_qpoints(qpoints)
    ours.run_qpoints(qpoints)
    np.testing.assert_allclose(
        ours.get_qpoints_dict()["frequencies"], reference.get_qpoints_dict()["frequencies"], atol=1e-6
    )


def test_srtio3_soft_modes_at_gamma(shared_data):
    ph = _ours(shared_data, "SrTiO3")
    ph.run_qpoints([[0, 0, 0]])
    freqs = np.sort(ph.get_qpoints_dict()["frequencies"][0])
    # phonopy's own test_treat_imaginary_modes asserts -2.3769 THz (x3) from these force constants
    np.testing.assert_allclose(freqs[:3], -2.3769, atol=2e-3)


@pytest.mark.parametrize("settings", [DEFAULT, PHONONBENCH], ids=lambda s: s.name)
@pytest.mark.parametrize("name", sorted(CASES))
def test_dft_verdicts(shared_data, name, settings):
    report = _scan(_ours(shared_data, name), settings)
    decision = verdict.decide(report, born=True if settings.elastic_tensor else None)
    decided, reason = decision.verdict, decision.reason
    assert decided == CASES[name][1], report.worst
    if decided == "unstable":
        assert reason == "optical"  # perovskite octahedral tilts / polar modes, not acoustic
        assert report.worst.frequency_thz < -1.0
    else:
        assert report.worst.frequency_thz > -settings.imaginary_tol_thz
        assert report.worst_path_frequency_thz >= -PHONONBENCH.phononbench_tol_thz


def test_srtio3_gamma_mode_classified_optical(shared_data):
    report = _scan(_ours(shared_data, "SrTiO3"), DEFAULT)
    at_gamma = [m for m in report.optical if m.where == "gamma"]
    assert at_gamma, "the Γ soft modes must be found and called optical"
    assert min(m.frequency_thz for m in at_gamma) == pytest.approx(-2.3769, abs=2e-3)
    assert all(m.commensurate for m in at_gamma)
    assert not report.acoustic_near_gamma


def test_default_scans_mesh_and_commensurate_points(shared_data):
    ph = _ours(shared_data, "NaCl")
    report = _scan(ph, DEFAULT)
    path_only = _scan(ph, PHONONBENCH)
    assert report.n_qpoints > path_only.n_qpoints
    mesh = phonons.mesh_numbers(ph, spacing_inv_angstrom=0.1, minimum=8)
    lengths = 2 * np.pi * np.linalg.norm(phonons.reciprocal_rows(ph), axis=1)
    assert all(n >= 8 for n in mesh)
    assert np.all(lengths / np.array(mesh) <= 0.1 + 1e-12)


def test_commensurate_points_are_commensurate():
    smat = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]]) * 2
    points = phonons.commensurate_points(smat)
    assert len(points) == round(abs(np.linalg.det(smat)))
    assert phonons.is_commensurate(points, smat).all()
    assert not phonons.is_commensurate(np.array([[0.01, 0.01, 0.0]]), smat).any()


def test_seekpath_path_labels_sit_on_special_points(shared_data):
    ph = _ours(shared_data, "NaCl")
    path = phonons.seekpath_band_path(ph, npoints=101)
    assert path.labels[0] == "Γ"
    assert len(path.segments) == len(path.path_connections)
    assert all(len(s) == 101 for s in path.segments)
    # Γ is at the origin in any basis; X of an fcc lattice lies 2π/a·(1,0,0) away (Cartesian)
    q0 = path.segments[0][0]
    assert np.allclose(q0, 0)
    a = ph.primitive.cell[0] @ ph.primitive.cell[0]  # |a_prim|^2 = a^2/2
    conv = np.sqrt(2 * a)
    x_norm = phonons.q_norms(ph, path.segments[0][-1:])[0]
    assert x_norm == pytest.approx(2 * np.pi / conv, rel=1e-6)
