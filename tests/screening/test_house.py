"""House rules of the science core that no linter states: settings enter at the edge."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "workers" / "screening"


def test_the_core_reads_and_writes_no_environment_variable() -> None:
    """Settings are built at the edge (CLI, worker, benchmarks) and passed down as parameters."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv"):
                offenders.append(f"{path.relative_to(CORE)}:{node.lineno} os.{node.attr}")
    assert not offenders, offenders


def test_the_public_surface_resolves_lazily() -> None:
    """Every name `workers.screening` exports is importable, and importing the package loads no torch."""
    import subprocess
    import sys

    code = (
        "import sys, workers.screening as s; assert 'torch' not in sys.modules; "
        "[getattr(s, name) for name in s.__all__]; print(len(s.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 20
