"""Band plots from DFT phonons, summary numbers on hand-made rows, the output folder's skip logic."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from app.outputs import OutputFolder, row_key
from workers.screening.protocols import DEFAULT, PHONONBENCH
from workers.screening.report.artifacts import safe_name
from workers.screening.report.plots import draw_band_structure, get_special_points, plot_band_structure
from workers.screening.report.summary import format_summary, summarize_results
from workers.screening.types import (
    BandData,
    PotentialInfo,
    Provenance,
    RelaxSummary,
    ScreeningResult,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _band_data(path: Path, *, npoints: int = 31) -> BandData:
    """BandData the way the phonon stage builds it, from a stored DFT phonopy file."""
    import phonopy
    from phonopy.phonon.band_structure import get_band_qpoints_by_seekpath

    ph = phonopy.load(path)
    qpoints, labels, connections = get_band_qpoints_by_seekpath(ph.primitive, npoints, is_const_interval=True)
    labels = ["Γ" if label == "GAMMA" else label for label in labels]
    ph.run_band_structure(qpoints, labels=labels, path_connections=connections)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        bands = ph.get_band_structure_dict()
        ph.run_mesh([8, 8, 8], is_gamma_center=True)
        ph.run_total_dos()
        dos = ph.get_total_dos_dict()
    return BandData(
        distances=[d.tolist() for d in bands["distances"]],
        frequencies=[f.tolist() for f in bands["frequencies"]],
        labels=list(labels),
        path_connections=[bool(c) for c in connections],
        dos_frequencies_thz=dos["frequency_points"].tolist(),
        dos_states_per_thz=dos["total_dos"].tolist(),
    )


@pytest.fixture(scope="module")
def srtio3_bands(shared_data: Path) -> BandData:
    return _band_data(shared_data / "phonopy_testdata" / "phonopy_SrTiO3.yaml.xz")


@pytest.fixture(scope="module")
def nacl_bands(shared_data: Path) -> BandData:
    return _band_data(shared_data / "phonopy_testdata" / "phonopy_params_NaCl-1.00.yaml.xz")


def test_plot_is_a_png(nacl_bands: BandData) -> None:
    png = plot_band_structure(nacl_bands, title="NaCl")
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 20_000  # a blank 880x530 canvas compresses to a few kB


def test_imaginary_modes_drawn_below_zero(srtio3_bands: BandData) -> None:
    fig = draw_band_structure(srtio3_bands)
    ax_band, ax_dos = fig.axes
    lower, upper = ax_band.get_ylim()
    assert lower < -2.38 < 0 < 23 < upper  # Γ soft mode at -2.38 THz, top optical mode ~25 THz
    drawn_min = min(min(line.get_ydata()) for line in ax_band.get_lines())
    assert drawn_min < -2.3
    assert ax_dos.get_ylim() == (lower, upper)  # the DOS shares the frequency axis


def test_special_points_follow_phonopy_labels(nacl_bands: BandData) -> None:
    positions, texts = get_special_points(nacl_bands)
    # seekpath's fcc path: Γ-X-U | K-Γ-L-W-X, the jump shown as one tick "U|K"
    plain = [t.replace("$", "").replace("\\mathrm{", "").replace("}", "") for t in texts]
    plain = [t.replace("\\Gamma", "Γ") for t in plain]
    assert plain == ["Γ", "X", "U|K", "Γ", "L", "W", "X"]
    assert positions[0] == 0.0
    assert positions[-1] == pytest.approx(nacl_bands.distances[-1][-1])
    assert positions == sorted(positions)


def test_mismatched_labels_give_unlabelled_ticks(nacl_bands: BandData) -> None:
    bands = BandData(**{**nacl_bands.__dict__, "labels": ["Γ"]})
    positions, texts = get_special_points(bands)
    assert len(positions) == 7 and set(texts) == {""}
    assert plot_band_structure(bands).startswith(PNG_SIGNATURE)


def _row(
    verdict,
    *,
    system="cubic",
    sg=225,
    pb=None,
    pb3=None,
    relaxed=True,
    reason=None,
    warn=(),
    potential="sevennet-0",
    pot_warning=None,
    generator=None,
):
    return {
        "name": f"s{id(object())}",
        "verdict": verdict,
        "reason": reason,
        "stable_phononbench": (verdict == "stable") if pb is None else pb,
        "stable_phononbench_v3": (verdict == "stable") if pb3 is None else pb3,
        "crystal_system": system,
        "spacegroup_number": sg,
        "relax": None if relaxed is None else {"converged": relaxed, "spacegroup_after": f"X ({sg})"},
        "warnings": list(warn),
        "generator": generator,
        "provenance": {"potential": {"name": potential, "warning": pot_warning}},
    }


def test_summary_counts_and_rates() -> None:
    rows = [
        _row("stable", warn=["supercell capped: 412 atoms"]),
        _row("stable", pb=False, system="hexagonal", sg=186),  # a -0.05 THz dip on its path
        _row("stable", system="hexagonal", sg=186, generator="mattergen"),
        _row("unstable", reason="optical", sg=221),
        _row("unstable", reason="acoustic", system="hexagonal", sg=186, pb=False, pb3=True),
        _row("relax_failed", relaxed=False, reason="not converged: fmax 0.2", system="triclinic", sg=1),
        _row("failed", relaxed=None, reason="parse_error: bad", system=None, sg=None),
        _row(
            "failed",
            relaxed=None,
            reason="overlapping_atoms: 0.3 Å",
            system=None,
            sg=None,
            warn=["supercell capped: 500 atoms"],
        ),
    ]
    s = summarize_results(rows)
    assert s["n"] == 8
    assert s["counts"] == {"stable": 3, "unstable": 2, "relax_failed": 1, "failed": 2}
    assert s["n_relaxed"] == 5
    assert s["stable_rate"] == pytest.approx(3 / 8)
    assert s["stable_rate_relaxed"] == pytest.approx(3 / 5)
    assert s["stable_phononbench"] == 2
    assert s["stable_phononbench_rate"] == pytest.approx(2 / 8)
    assert s["stable_phononbench_v3"] == 4  # the -0.1 THz threshold of PhononBench v3
    assert s["stable_phononbench_v3_rate"] == pytest.approx(4 / 8)
    assert s["unstable_reasons"] == {"optical": 1, "acoustic": 1}
    assert s["failure_reasons"] == {"not converged": 1, "parse_error": 1, "overlapping_atoms": 1}
    assert list(s["by_crystal_system"]) == ["triclinic", "hexagonal", "cubic", "unknown"]
    hexa = s["by_crystal_system"]["hexagonal"]
    assert hexa["n"] == 3 and hexa["counts"]["stable"] == 2
    assert hexa["stable_rate"] == pytest.approx(2 / 3)
    assert hexa["stable_phononbench_rate"] == pytest.approx(1 / 3)
    assert hexa["stable_phononbench_v3_rate"] == pytest.approx(3 / 3)
    assert s["by_crystal_system"]["triclinic"]["stable_rate_relaxed"] is None
    assert list(s["by_spacegroup"]) == ["1", "186", "221", "225", "unknown"]
    assert s["by_spacegroup"]["186"]["symbol"] == "X"
    assert s["by_spacegroup"]["225"]["stable_rate"] == 1.0
    assert s["by_generator"]["mattergen"]["n"] == 1 and s["by_generator"]["unknown"]["n"] == 7
    assert s["warnings"] == {"supercell capped": 2}
    text = format_summary(s)
    assert "37.5 %" in text and "60.0 %" in text and "hexagonal" in text and "186 X" in text
    head, _, overall = text.splitlines()[:3]
    assert head.endswith("PB -1e-3 PB v3 -0.1")
    assert overall.split()[-4:] == ["25.0", "%", "50.0", "%"]  # both PhononBench rates, side by side
    json.dumps(s)  # summary.json must be plain JSON


def test_summary_potential_warnings_and_empty() -> None:
    text = "potential 'auto' resolved to 'sevennet-0': MatterSim weights are not here"
    rows = [_row("stable", pot_warning=text, warn=[text]), _row("unstable", pot_warning=text)]
    s = summarize_results(rows)
    assert s["warnings"] == {"potential: potential 'auto' resolved to 'sevennet-0'": 2}
    assert s["by_potential"]["sevennet-0"]["stable_rate"] == 0.5
    empty = summarize_results([])
    assert empty["n"] == 0 and empty["stable_rate"] is None
    assert "all structures" in format_summary(empty)


def _result(name: str, *, protocol=DEFAULT, potential="sevennet-0", bands=None) -> ScreeningResult:
    info = PotentialInfo(name=potential, version="test", checkpoint="x", checkpoint_sha256="0", device="cpu")
    relax = RelaxSummary(
        converged=True,
        steps=12,
        cycles=1,
        max_force_ev_per_angstrom=0.001,
        stress_gpa=(0.0,) * 6,
        energy_per_atom_ev=-5.4,
        volume_change_fraction=0.01,
        spacegroup_before="Fd-3m (227)",
        spacegroup_after="Fd-3m (227)",
    )
    return ScreeningResult(
        name=name,
        verdict="stable",
        reason=None,
        stable_phononbench=True,
        stable_phononbench_v3=True,
        formula="Si2",
        n_sites=2,
        crystal_system="cubic",
        spacegroup_number=227,
        worst_mode=None,
        min_frequency_thz=0.0,
        relax=relax,
        phonons=None,
        confirmation_of=None,
        elastic_tensor_gpa=None,
        born_stable=True,
        thermal=None,
        bands=bands,
        relaxed_cif="data_Si\n" if bands is not None else None,
        timings_s={"relax": 1.0, "phonons": 2.0},
        warnings=[],
        provenance=Provenance(
            protocol=protocol.name,
            protocol_settings=protocol.as_dict(),
            settings_hash=protocol.settings_hash(),
            potential=info,
            versions={},
        ),
    )


def test_output_folder_skip_logic(tmp_path: Path, nacl_bands: BandData) -> None:
    out = OutputFolder(tmp_path / "out")
    row = out.write_result(_result("a.zip:tmp/gen_1.cif", bands=nacl_bands), source="a.zip")
    out.write_result(_result("eval_gen.pt#37"))
    assert row["files"]["plot"] == out.folder_of("a.zip:tmp/gen_1.cif") + "/band_structure.png"
    assert out.folder_of("a.zip:tmp/gen_1.cif").startswith("structures/a.zip_tmp_gen_1.cif-")
    for rel in row["files"].values():
        assert (out.root / rel).is_file()
    done = OutputFolder(tmp_path / "out").done_keys()
    h_default, h_pb = DEFAULT.settings_hash(), PHONONBENCH.settings_hash()
    assert ("a.zip:tmp/gen_1.cif", h_default, "sevennet-0") in done
    assert ("eval_gen.pt#37", h_default, "sevennet-0") in done
    assert ("a.zip:tmp/gen_1.cif", h_pb, "sevennet-0") not in done  # other protocol: redo
    assert ("a.zip:tmp/gen_1.cif", h_default, "chgnet-0.3.0") not in done  # other potential: redo
    # a crash mid-line leaves a broken tail: it is ignored and the next row starts a fresh line
    with out.jsonl.open("ab") as fh:
        fh.write(b'{"name": "half')
    out.write_result(_result("a.zip:tmp/gen_1.cif", protocol=PHONONBENCH))
    rows = out.read_rows()
    assert len(rows) == 3 and len({row_key(r) for r in rows}) == 3
    summary = out.write_tables()
    assert summary["n"] == 3
    csv_lines = (out.root / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("name,verdict,reason,stable_phononbench,stable_phononbench_v3,")
    assert csv_lines[1].startswith("a.zip:tmp/gen_1.cif,stable,,True,True,")
    assert len(csv_lines) == 4
    assert (out.root / "summary.txt").read_text().startswith("overall")
    assert json.loads((out.root / "summary.json").read_text())["counts"]["stable"] == 3


def test_safe_names_are_unique_and_safe() -> None:
    names = [
        "file.zip:tmp/gen_1.cif",
        "file.zip:tmp_gen_1.cif",
        "eval_gen.pt#37",
        "eval_gen.pt#3",
        "../../etc/passwd",
        "a b/c",
        "",
        "Ωμ.cif",
        "x" * 300,
    ]
    stems = [safe_name(n) for n in names]
    assert len(set(stems)) == len(names)
    for stem in stems:
        assert not stem.startswith(".") and len(stem) <= 100
        assert all(c.isalnum() or c in "._-" for c in stem)
    assert safe_name("eval_gen.pt#37").startswith("eval_gen.pt_37-")
    assert safe_name("file.zip:tmp/gen_1.cif") == safe_name("file.zip:tmp/gen_1.cif")
