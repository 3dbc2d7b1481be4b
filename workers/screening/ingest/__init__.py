"""Ingest: read user files (every supported format, archives included) into validated records."""

from workers.screening.ingest.read import known_structure_file, read_bytes, read_structures, sniff_format
from workers.screening.ingest.validate import DEFAULT_MAX_ATOMS, validate_structure

__all__ = [
    "DEFAULT_MAX_ATOMS",
    "known_structure_file",
    "read_bytes",
    "read_structures",
    "sniff_format",
    "validate_structure",
]
