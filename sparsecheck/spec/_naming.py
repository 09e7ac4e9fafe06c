"""How spec files are named (a module of its own: the pytest plugin reads it at every start)."""

from __future__ import annotations

#: The file names collected as spec files in a folder (and by pytest).
SPEC_GLOBS = ("*.sparsecheck.yaml", "*.sparsecheck.yml")
