"""The artifact store: bulky per-screening files in a directory, referenced by relative path."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class ArtifactMissing(FileNotFoundError):
    """A row names a file the store no longer has (deleted by hand, or another volume mounted)."""

    def __init__(self, relpath: str) -> None:
        super().__init__(f"{relpath} is not in the artifact store")
        self.relpath = relpath


@dataclass(frozen=True)
class ArtifactStore:
    """Files under `root`; rows keep the relative path so the root can move."""

    root: Path

    def write_bytes(self, relpath: str, data: bytes) -> str:
        """Write atomically (temp file + rename) so a reader never sees half a file."""
        path = self._resolve(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return relpath

    def write_text(self, relpath: str, text: str) -> str:
        return self.write_bytes(relpath, text.encode())

    def read_bytes(self, relpath: str) -> bytes:
        """The file's bytes; ArtifactMissing when the store no longer has it."""
        try:
            return self._resolve(relpath).read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(relpath) from None

    def read_if_present(self, relpath: str | None) -> bytes | None:
        """The file's bytes, or None when there is no path or the file went missing (logged): for
        callers that have a fallback, such as the input structure for a relaxed one."""
        if relpath is None:
            return None
        try:
            return self.read_bytes(relpath)
        except ArtifactMissing:
            logger.warning("artifact %s is missing from the store; falling back", relpath)
            return None

    def exists(self, relpath: str) -> bool:
        return self._resolve(relpath).is_file()

    def _resolve(self, relpath: str) -> Path:
        root = self.root.resolve()
        path = (root / relpath).resolve()
        if root not in path.parents:
            raise ValueError(f"artifact path escapes the store: {relpath!r}")
        return path
