"""The README tells one story: no heading twice, the settings table is `Settings`, the layout is the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PACKAGES = ("app", "workers", "models", "migrations")


def _section(title: str) -> str:
    """The text under heading `title` up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}\s*$", README, flags=re.M)
    assert match, f"README has no section {title!r}"
    level = len(match.group(1))
    rest = README[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return rest[: end.start()] if end else rest


def test_no_heading_repeats() -> None:
    headings = re.findall(r"^#+ (.+?)\s*$", re.sub(r"```.*?```", "", README, flags=re.S), flags=re.M)
    repeated = sorted({h for h in headings if headings.count(h) > 1})
    assert not repeated, f"headings used more than once: {repeated}"


def test_settings_table_is_the_settings_object_in_both_directions() -> None:
    from app.config import Settings

    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", _section("Settings"), flags=re.M))
    read = Settings.env_names()
    assert not read - documented, f"settings read but not in the README's table: {sorted(read - documented)}"
    assert not documented - read, f"README documents settings nothing reads: {sorted(documented - read)}"


def test_layout_section_matches_the_tree() -> None:
    block = re.search(r"```\n(.*?)```", _section("Layout"), flags=re.S)
    assert block, "the Layout section has no code block"
    listed: set[Path] = set()
    stack: list[str] = []
    for line in block.group(1).splitlines():
        match = re.match(r"^( *)(\S+/)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        stack = [*stack[:depth], match.group(2).rstrip("/")]
        path = ROOT.joinpath(*stack)
        assert path.is_dir(), f"README's layout names {'/'.join(stack)}/, which is not in the tree"
        listed.add(path)
    packages = {
        init.parent
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
        if "__pycache__" not in init.parts and init.parent.parent != ROOT / "migrations"
    }
    missing = sorted(str(p.relative_to(ROOT)) for p in packages - listed if p.parent != ROOT / "migrations")
    assert not missing, f"packages missing from the README's layout: {missing}"


def test_phononbench_figures_follow_its_v3() -> None:
    """PhononBench v3 (June 2026): 133,838 structures, 32.15 % stable at -0.1 THz; both thresholds said."""
    intro = README.split("\n## ", 1)[0]
    assert all(figure in intro for figure in ("133,838", "32.15 %", "45.05 %", "−0.1 THz", "−1e−3 THz"))
    assert "108,843" not in README  # the first version's count


def test_summary_sample_is_what_the_cli_prints() -> None:
    """The sample of summary.txt has the columns `format_summary` writes, both PhononBench rates included."""
    from workers.screening.report.summary import format_summary, summarize_results

    head, rule = format_summary(summarize_results([])).splitlines()[:2]
    assert f"\n{head}\n{rule}\n" in README
