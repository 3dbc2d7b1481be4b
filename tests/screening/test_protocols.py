"""The `phononbench` protocol equals the published settings; the hash changes with any setting."""

from __future__ import annotations

import pytest

from workers.screening.protocols import DEFAULT, PHONONBENCH, get_protocol


def test_phononbench_settings_are_the_published_ones():
    # Han et al., arXiv 2512.21227, as written down in shared/PROTOCOL.md
    p = PHONONBENCH
    assert p.use_primitive is False  # the input cell as given
    assert p.symprec == 0.01
    assert p.relax_optimizer == "FIRE"
    assert p.relax_fmax_ev_per_angstrom == 0.0025
    assert p.relax_steps_per_cycle == 500
    assert p.relax_max_cycles == 15
    assert p.relax_abort_force_ev_per_angstrom == 1e4
    assert p.relax_fail_fmax_ev_per_angstrom == 0.005
    assert p.supercell == "fixed" and p.supercell_diagonal == (2, 2, 2)
    assert p.confirm_incommensurate is False  # the paper re-checks nothing
    assert p.displacement_angstrom == 0.01
    assert p.displacement_is_diagonal is False
    assert p.subtract_force_drift is True
    assert p.band_path == "phononbench" and p.band_npoints == 101
    assert p.check_mesh is False and p.check_commensurate is False and p.elastic_tensor is False
    assert p.imaginary_tol_thz == 1e-3
    assert p.acoustic_tol_thz == 0.0
    assert p.phononbench_tol_thz == 1e-3
    assert p.phononbench_v3_tol_thz == 0.1  # PhononBench v3's headline threshold, stored beside


def test_default_settings_follow_the_protocol():
    p = DEFAULT
    assert p.use_primitive and p.supercell == "cubic"
    assert p.supercell_min_width_angstrom == 10.0 and p.supercell_max_atoms == 400
    assert p.confirm_incommensurate and not hasattr(p, "confirm_threshold_thz")  # any depth is re-checked
    assert p.confirm_min_width_angstrom == 15.0 and p.confirm_max_atoms == 600
    assert p.relax_fail_fmax_ev_per_angstrom == 0.005
    assert p.check_mesh and p.mesh_spacing_inv_angstrom == 0.1 and p.mesh_min == 8
    assert p.check_commensurate and p.elastic_tensor and p.elastic_strain == 0.005
    assert (p.imaginary_tol_thz, p.acoustic_tol_thz, p.acoustic_q_radius_inv_angstrom) == (0.05, 0.5, 0.1)
    assert (p.phononbench_tol_thz, p.phononbench_v3_tol_thz) == (1e-3, 0.1)


def test_phonopy_default_primitive_matrix_is_not_relied_on(shared_data):
    """phonopy >= 4 defaults to primitive_matrix='auto'; our Phonopy objects must not reduce."""
    from ase.build import bulk

    from workers.screening.physics.phonons import build_phonopy

    conventional = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    ph = build_phonopy(conventional, supercell_matrix=[2, 2, 2], settings=PHONONBENCH)
    assert len(ph.primitive) == 8  # the input cell as given, not the 2-atom primitive
    assert len(ph.supercell) == 64


def test_settings_hash_tracks_every_setting():
    assert PHONONBENCH.settings_hash() != DEFAULT.settings_hash()
    assert get_protocol("default").settings_hash() == DEFAULT.settings_hash()
    changed = get_protocol("default", imaginary_tol_thz=0.02)
    assert changed.settings_hash() != DEFAULT.settings_hash()
    assert len(DEFAULT.settings_hash()) == 16


def test_unknown_protocol():
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("fast")
