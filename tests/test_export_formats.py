"""The export writers without the web or a database: records built by hand, files read back."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest

from app.export_formats import EXPORT_FORMATS
from app.export_formats.records import ExportRecord, get_file_stem, get_flat_fields
from app.schemas import CandidateOut, VerdictOut, WorstMode


def _structure(a: float = 5.43):
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]]).get_primitive_structure()


def _record(
    id_: int = 1,
    *,
    name: str = "si.cif",
    generator: str | None = "g",
    verdict: str | None = "stable",
    relaxed: bool = True,
) -> ExportRecord:
    given = None
    if verdict is not None:
        given = VerdictOut(
            verdict=verdict, reason=None, stable_phononbench=verdict == "stable", stable_phononbench_v3=True,
            min_frequency_thz=-0.01, worst_mode=WorstMode(frequency_thz=-0.01, qpoint=[0, 0, 0], branch=0, q_norm_inv_angstrom=0),
            spacegroup_after="Fd-3m (227)", spacegroup_number=227, crystal_system="cubic", energy_per_atom_ev=-5.4,
            formula="Si2", potential="sevennet-0", potential_warning=None, settings_hash="abc",
        )  # fmt: skip
    candidate = CandidateOut(
        id=id_, batch_id=1, name=name, generator=generator, source_file=name, source_index=0, reduced_formula="Si",
        elements=["Si"], n_sites=2, spacegroup_number=227, spacegroup_symbol="Fd-3m", crystal_system="cubic",
        fingerprint="f", status="done" if verdict else "queued", verdict=given,
    )  # fmt: skip
    return ExportRecord(
        candidate=candidate,
        generator_version=None,
        input_structure=_structure().as_dict(),
        input_cif=_structure().to(fmt="cif"),
        relaxed_cif=_structure(5.5).to(fmt="cif") if relaxed else None,
        worst_path_frequency_thz=-0.01 if verdict in ("stable", "unstable") else None,
    )


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("gen.zip:tmp/gen_1.cif", "7-gen_1"),
        ("si.cif", "7-si"),
        ("a.b.cif", "7-a_b"),  # no dot left: PhononBench cuts a name at its first dot
        ("POSCAR", "7-POSCAR"),
        ("../../x y.cif", "7-x_y"),
        ("...", "7-structure"),
        ("Ünïcode.cif", "7-n_code"),
    ],
)
def test_file_stems_are_safe_unique_and_dotless(name, stem):
    assert get_file_stem(_record(7, name=name)) == stem


def test_flat_fields_describe_the_exported_structure():
    relaxed = get_flat_fields(_record())
    assert (relaxed["space_group"], relaxed["space_group_number"], relaxed["structure_source"]) == (
        "Fd-3m",
        227,
        "relaxed",
    )
    unscreened = get_flat_fields(_record(verdict=None, relaxed=False))
    assert unscreened["verdict"] is None and unscreened["structure_source"] == "input"
    assert unscreened["space_group"] == "Fd-3m"  # the input's


def test_extxyz_leaves_out_empty_fields_and_keeps_a_frame_one_header_line():
    import ase.io

    out = io.BytesIO()
    EXPORT_FORMATS["extxyz"].write([_record(1, name="two\nlines.cif"), _record(2, verdict=None, relaxed=False)], out)
    first, second = ase.io.read(io.StringIO(out.getvalue().decode()), index=":", format="extxyz")
    assert first.info["name"] == "two lines.cif" and first.info["verdict"] == "stable"
    assert first.cell.lengths()[0] == pytest.approx(_structure(5.5).lattice.a)
    assert "verdict" not in second.info and second.info["structure_source"] == "input"


def test_phononbench_files_per_generator():
    records = [
        _record(3, name="b.cif", generator="Matter Gen"),
        _record(1, name="a.cif", generator="Matter Gen", verdict="unstable"),
        _record(2, name="c.cif", generator="Matter_Gen", verdict="relax_failed", relaxed=False),
        _record(4, name="d.cif", generator=None, verdict=None, relaxed=False),
        _record(5, name="e.cif", generator="manifest.csv", verdict="failed", relaxed=True),
    ]
    out = io.BytesIO()
    EXPORT_FORMATS["phononbench"].write(records, out)
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        # two generators that would share a folder name get two folders; none shadows manifest.csv
        assert zf.read("Matter_Gen/relaxed/Lable.txt").decode() == "1-a\tunStable\n3-b\tStable\n"
        assert zf.read("Matter_Gen-2/relaxed/Lable.txt").decode() == "2-c\tunStable\n"
        assert zf.read("no_generator/relaxed/Lable.txt").decode() == ""
        assert zf.read("manifest.csv-2/relaxed/Lable.txt").decode() == "5-e\tunStable\n"
        summary = list(csv.reader(io.StringIO(zf.read("Matter_Gen/phonon_summary.csv").decode())))
        assert summary == [
            ["structure_name", "min_frequency", "is_stable", "yaml_path", "cif_path", "npz_path"],
            ["1-a", "-0.01", "False", "", "relaxed/1-a_relaxed.cif", ""],
            ["3-b", "-0.01", "True", "", "relaxed/3-b_relaxed.cif", ""],
        ]
        # a failed verdict that relaxed: its relaxed CIF, but no summary row (no phonons)
        assert "manifest.csv-2/relaxed/5-e_relaxed.cif" in names
        assert zf.read("manifest.csv-2/phonon_summary.csv").decode().count("\n") == 1
        assert {"manifest.csv", "README.txt"} <= names


def test_json_formats_carry_the_api_serialization():
    from pymatgen.core import Structure

    record = _record()
    out = io.BytesIO()
    EXPORT_FORMATS["jsonl"].write([record, record], out)
    lines = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert len(lines) == 2 and lines[0]["verdict"] == record.candidate.verdict.model_dump(mode="json")
    out = io.BytesIO()
    EXPORT_FORMATS["pymatgen-json"].write([record, record], out)
    structures = [Structure.from_dict(d) for d in json.loads(out.getvalue())]
    assert [s.properties["verdict"]["verdict"] for s in structures] == ["stable", "stable"]
