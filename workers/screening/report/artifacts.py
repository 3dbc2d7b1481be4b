"""The one artifact layout: which files a result yields, their names, and the name sanitiser.

Both back ends write through `write_result_files`: the CLI's output folder (one folder per
structure under `structures/`) and the service's artifact store (one folder per screening under
`screenings/`). A back end is anything with `write_bytes(relpath, data) -> relpath`
(`models.artifacts.ArtifactStore` is one); the core never learns where the bytes go.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from typing import Any, Protocol

from workers.screening.types import ScreeningResult

# artifact kind -> file name inside a result's folder
ARTIFACT_FILES: dict[str, str] = {
    "relaxed_cif": "relaxed.cif",
    "bands": "bands.json",
    "plot": "band_structure.png",
    "force_constants": "phonopy_params.yaml.xz",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ArtifactSink(Protocol):
    def write_bytes(self, relpath: str, data: bytes) -> str: ...


def safe_name(name: str, *, max_length: int = 80) -> str:
    """A file-name-safe, unique stem for any name: a readable slug + 10 hex digits of its sha1.

    No separators and no dot-only names, so it cannot escape its folder; the hash keeps names that
    slug to the same text (`a/b` and `a_b`) apart. `file.zip:tmp/gen_1.cif` ->
    `file.zip_tmp_gen_1.cif-<hash>`.
    """
    slug = _UNSAFE.sub("_", name).strip("._-")[:max_length] or "file"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def result_files(result: ScreeningResult, *, plot: bool = True) -> dict[str, bytes]:
    """The artifact files of one result, by kind (see ARTIFACT_FILES); only those it has."""
    files: dict[str, bytes] = {}
    if result.relaxed_cif:
        files["relaxed_cif"] = result.relaxed_cif.encode("utf-8")
    if result.bands is not None:
        bands = to_jsonable(dataclasses.asdict(result.bands))
        files["bands"] = json.dumps(bands, separators=(",", ":")).encode("utf-8")
        if plot:
            from workers.screening.report.plots import plot_band_structure  # matplotlib only when plotting

            files["plot"] = plot_band_structure(
                result.bands, title=f"{result.name}  {result.formula}  {result.verdict}"
            )
    if result.phonopy_params_xz is not None:
        files["force_constants"] = result.phonopy_params_xz
    return files


def write_result_files(
    result: ScreeningResult, *, sink: ArtifactSink, folder: str, plot: bool = True
) -> dict[str, str]:
    """Write the result's artifact files into `folder` of `sink`; returns {kind: relative path}."""
    return {
        kind: sink.write_bytes(f"{folder}/{ARTIFACT_FILES[kind]}", data)
        for kind, data in result_files(result, plot=plot).items()
    }


def result_record(result: ScreeningResult, *, files: dict[str, str], **labels: Any) -> dict[str, Any]:
    """The JSON record of one result (what results.jsonl and the verdict row's `result` hold):
    every field but the bulky arrays, the artifact paths under `files`, and the caller's labels
    (e.g. source, generator)."""
    record: dict[str, Any] = to_jsonable({**result.as_dict(bulky=False), **labels, "files": files})
    return record


def to_jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf become None (Postgres JSON rejects them), numpy becomes Python."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
