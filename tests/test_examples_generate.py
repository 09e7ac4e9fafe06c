"""``specs/examples/generate.py``: the checkpoints the README's Quickstart reads are the same on every run."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

GENERATE = Path(__file__).resolve().parents[1] / "specs" / "examples" / "generate.py"


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_generate_is_seeded(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("examples_generate", GENERATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path / "first")
    module.main(tmp_path / "second")
    first, second = _digests(tmp_path / "first"), _digests(tmp_path / "second")
    assert any(name.startswith("rl-a-sub/") for name in first)
    assert first == second
