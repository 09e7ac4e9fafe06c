"""Planted checkpoints for tests: tiny Llama-shaped state dicts with known changes.

For plugin authors and sparsecheck's own tests.  Build a base state dict, plant changes in an
exact, seeded fraction of its entries, write both sides in any layout sparsecheck reads, and
compare what a metric reports against the planted masks::

    from sparsecheck.testing import planted_pair

    pair = planted_pair(tmp_path, fraction=0.3)      # tmp_path/base, tmp_path/tuned
    spec = tmp_path / "mine.sparsecheck.yaml"
    spec.write_text(
        "version: 1\n"
        f"checkpoints: {{base: '{pair.base}', tuned: '{pair.tuned}'}}\n"
        "checks:\n"
        "  - {id: mine, metric: my_metric, args: {base: base, tuned: tuned}}\n"
    )
    session = run_spec(spec, plugins=[my_plugin_module])
    assert session.outcomes[0].result.value == expected_from(pair.masks)

Changed entries differ from the base after rounding to the tensor's dtype (by more than
``min_abs_change``); every other entry is bitwise identical to the base.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sparsecheck._config import Session
from sparsecheck._extras import require
from sparsecheck.engine._outcome import CheckOutcome

if TYPE_CHECKING:
    import torch

Layout = Literal["file", "dir", "sharded", "bin", "bin-sharded"]

__all__ = [
    "Layout",
    "PlantedPair",
    "plant_changes",
    "planted_pair",
    "run_checks",
    "run_spec",
    "tiny_llama_state_dict",
    "write_checkpoint",
]


def tiny_llama_state_dict(
    layers: int = 2,
    hidden: int = 16,
    intermediate: int = 32,
    vocab: int = 64,
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """A random state dict with Llama's tensor names and shapes (norms near 1, others ~N(0, 0.02));
    ``dtype`` defaults to float32."""
    _require_torch()
    import torch

    dtype = dtype or torch.float32
    generator = torch.Generator().manual_seed(seed)

    def weight(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * 0.02).to(dtype)

    def norm() -> torch.Tensor:
        return (1 + torch.randn(hidden, generator=generator) * 0.02).to(dtype)

    state = {"model.embed_tokens.weight": weight(vocab, hidden)}
    for layer in range(layers):
        prefix = f"model.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[f"{prefix}self_attn.{proj}.weight"] = weight(hidden, hidden)
        state[f"{prefix}mlp.gate_proj.weight"] = weight(intermediate, hidden)
        state[f"{prefix}mlp.up_proj.weight"] = weight(intermediate, hidden)
        state[f"{prefix}mlp.down_proj.weight"] = weight(hidden, intermediate)
        state[f"{prefix}input_layernorm.weight"] = norm()
        state[f"{prefix}post_attention_layernorm.weight"] = norm()
    state["model.norm.weight"] = norm()
    state["lm_head.weight"] = weight(vocab, hidden)
    return state


def write_checkpoint(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    layout: Layout = "dir",
    shards: int = 2,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``tensors`` the way ``save_pretrained`` does and return ``path``.

    ``file`` writes ``path`` itself as one ``.safetensors`` file; ``dir`` writes
    ``path/model.safetensors``; ``sharded`` writes ``shards`` files and
    ``model.safetensors.index.json``; ``bin`` and ``bin-sharded`` do the same with
    ``torch.save`` (tensors sharing storage stay shared: tied weights).  Folders get a
    ``config.json`` when ``config`` is given.
    """
    _require_torch()
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if layout == "file":
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(dict(tensors), str(path), metadata={"format": "pt"})
        return path
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (path / "config.json").write_text(json.dumps(dict(config), indent=2))
    torch_layout = layout in ("bin", "bin-sharded")
    stem, suffix = ("pytorch_model", ".bin") if torch_layout else ("model", ".safetensors")
    groups = _split(list(tensors), shards if layout in ("sharded", "bin-sharded") else 1)
    weight_map: dict[str, str] = {}
    for number, names in enumerate(groups, start=1):
        name = f"{stem}{suffix}" if len(groups) == 1 else f"{stem}-{number:05d}-of-{len(groups):05d}{suffix}"
        part = {n: tensors[n] for n in names}
        if torch_layout:
            torch.save(part, path / name)
        else:
            save_file(part, str(path / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, name))
    if len(groups) > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (path / f"{stem}{suffix}.index.json").write_text(json.dumps(index, indent=2))
    return path


def _split(names: list[str], parts: int) -> list[list[str]]:
    """``names`` in order, cut into ``parts`` contiguous groups of nearly equal length (none empty)."""
    parts = max(1, min(parts, len(names)))
    size, extra = divmod(len(names), parts)
    groups, start = [], 0
    for part in range(parts):
        end = start + size + (part < extra)
        groups.append(names[start:end])
        start = end
    return groups


def plant_changes(
    base: Mapping[str, torch.Tensor],
    fraction: float | Mapping[str, float],
    seed: int = 0,
    magnitude: float = 0.1,
    min_abs_change: float = 1e-5,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Change an exact fraction of each tensor's entries; return the tuned dict and the masks.

    ``fraction`` is one fraction for every tensor, or per tensor name (names left out stay
    unchanged).  In each tensor exactly ``round(fraction * numel)`` entries, chosen at random
    (seeded), move to ``w * (1 + magnitude) + magnitude * sign(w)`` (computed in float32, or
    float64 for float64 tensors, then rounded to the tensor's dtype); where rounding would leave
    an entry equal to the base, or closer than ``min_abs_change``, its step doubles until it is
    not.  The masks (bool tensors, True = changed) are the exact truth; every other entry is
    bitwise identical to the base.
    """
    _require_torch()
    import torch

    fractions = _fractions(base, fraction)
    generator = torch.Generator().manual_seed(seed)
    tuned: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    for name, tensor in base.items():
        if not tensor.is_floating_point():
            raise TypeError(f"{name}: can only plant changes in floating-point tensors, not {tensor.dtype}")
        flat = tensor.detach().reshape(-1).clone()
        mask = torch.zeros(flat.numel(), dtype=torch.bool)
        count = round(fractions[name] * flat.numel())
        mask[torch.randperm(flat.numel(), generator=generator)[:count]] = True
        flat[mask] = _moved(flat[mask], magnitude, min_abs_change, name)
        tuned[name] = flat.reshape(tensor.shape)
        masks[name] = mask.reshape(tensor.shape)
    return tuned, masks


def _fractions(base: Mapping[str, torch.Tensor], fraction: float | Mapping[str, float]) -> dict[str, float]:
    if isinstance(fraction, Mapping):
        unknown = sorted(set(fraction) - set(base))
        if unknown:
            raise ValueError(f"fraction names tensors not in the state dict: {', '.join(unknown)}")
        fractions = {name: float(fraction.get(name, 0.0)) for name in base}
    else:
        fractions = dict.fromkeys(base, float(fraction))
    bad = [name for name, f in fractions.items() if not 0.0 <= f <= 1.0]
    if bad:
        raise ValueError(f"fractions must lie in [0, 1]: {', '.join(bad)}")
    return fractions


def _moved(values: torch.Tensor, magnitude: float, min_abs_change: float, name: str) -> torch.Tensor:
    """``values`` moved by at least one step of their dtype and more than ``min_abs_change``."""
    _require_torch()
    import torch

    wide = torch.float64 if values.dtype == torch.float64 else torch.float32
    old = values.to(wide)
    step = magnitude * (old.abs() + 1) * torch.where(old < 0, -1.0, 1.0).to(wide)
    for _ in range(64):
        new = (old + step).to(values.dtype)
        unchanged = (new == values) | ((new.to(wide) - old).abs() <= min_abs_change)
        if not unchanged.any():
            return new
        step = torch.where(unchanged, step * 2, step)
    raise ValueError(f"{name}: could not plant a change in some entries (infinite values?)")


@dataclass
class PlantedPair:
    """A base and a tuned checkpoint on disk, and the exact masks of what changed."""

    base: Path
    tuned: Path
    masks: dict[str, torch.Tensor]

    @property
    def changed(self) -> int:
        """Entries changed in all tensors."""
        return sum(int(mask.sum()) for mask in self.masks.values())

    @property
    def total(self) -> int:
        """Entries in all tensors."""
        return sum(mask.numel() for mask in self.masks.values())

    @property
    def sparsity(self) -> float:
        """The unchanged fraction of all entries (update sparsity)."""
        return 1 - self.changed / self.total


def planted_pair(
    root: Path,
    fraction: float | Mapping[str, float] = 0.3,
    dtype: torch.dtype | None = None,
    layout: Layout = "dir",
    seed: int = 0,
    magnitude: float = 0.1,
    **tiny_kwargs: int,
) -> PlantedPair:
    """Write a tiny Llama base and a planted tuned copy under ``root`` and return the truth.

    Folders ``root/base`` and ``root/tuned`` (``base.safetensors``/``tuned.safetensors`` for
    the ``file`` layout); ``dtype`` defaults to bfloat16; ``tiny_kwargs`` go to
    :func:`tiny_llama_state_dict`.
    """
    root = Path(root)
    _require_torch()
    import torch

    base = tiny_llama_state_dict(dtype=dtype or torch.bfloat16, seed=seed, **tiny_kwargs)
    tuned, masks = plant_changes(base, fraction, seed=seed + 1, magnitude=magnitude)
    suffix = ".safetensors" if layout == "file" else ""
    return PlantedPair(
        base=write_checkpoint(root / f"base{suffix}", base, layout),
        tuned=write_checkpoint(root / f"tuned{suffix}", tuned, layout),
        masks=masks,
    )


def _require_torch() -> None:
    """The checkpoint builders here make torch tensors (the ``torch`` extra)."""
    require("torch", "sparsecheck.testing's checkpoint builders")


def run_spec(
    *paths: Path,
    plugins: Sequence[object] = (),
    options: Mapping[str, Any] | None = None,
    plugin_names: Sequence[str] = (),
) -> Session:
    """Run spec files like ``sparsecheck run`` would and return the session (its outcomes).

    ``plugins`` are extra plugin objects (e.g. your plugin module) registered first;
    ``plugin_names`` are ``-p`` values; ``options`` are CLI option values by dest name
    (``{"verbosity": 1, "json_path": Path(...)}``); the cache folder defaults to the first spec's
    folder.  Usage errors raise, like the CLI's exit 4.
    """
    from sparsecheck._session import run_specs

    defaults = {"verbosity": 0, "cache_dir": Path(paths[0]).parent / ".sparsecheck_cache"} if paths else {}
    return run_specs(paths, {**defaults, **(options or {})}, plugin_names, plugins)


def run_checks(
    root: Path,
    checkpoints: Mapping[str, Path],
    checks: Sequence[Mapping[str, Any]],
    plugins: Sequence[object] = (),
) -> dict[str, CheckOutcome]:
    """Write a spec of ``checkpoints`` and ``checks`` (spec mappings) under ``root``, run it
    without the result cache, and return the outcomes by check id."""
    import yaml

    spec = {"version": 1, "checkpoints": {k: str(v) for k, v in checkpoints.items()}, "checks": list(checks)}
    path = Path(root) / "suite.sparsecheck.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    session = run_spec(path, plugins=plugins, options={"no_cache": True})
    return {outcome.check.id: outcome for outcome in session.outcomes}
