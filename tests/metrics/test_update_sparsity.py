"""update_sparsity through the real engine, against planted masks (METRICS.md definitions).

Every test writes checkpoints and a spec under ``tmp_path``, runs the spec like ``sparsecheck
run`` does, and compares what the metric reports with counts taken from the planted masks or
computed independently with torch on the full tensors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sparsecheck import CheckOutcome, MetricResult, Status
from sparsecheck.testing import Layout, plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]
DEFAULT_ATOL = 1e-5  # METRICS.md: the atol policy's default tolerance


def check(check_id: str, **args: Any) -> dict[str, Any]:
    """A spec check of update_sparsity between the checkpoints ``base`` and ``tuned``."""
    return {"id": check_id, "metric": "update_sparsity", "args": {"base": "base", "tuned": "tuned", **args}}


def run_checks(root: Path, base: Path, tuned: Path, checks: list[dict[str, Any]]) -> dict[str, CheckOutcome]:
    """Write a spec with ``checks`` over ``base`` and ``tuned``, run it, return outcomes by id."""
    spec = {"version": 1, "checkpoints": {"base": str(base), "tuned": str(tuned)}, "checks": checks}
    path = root / "suite.sparsecheck.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return {outcome.check.id: outcome for outcome in run_spec(path).outcomes}


def measure(root: Path, base: Path, tuned: Path, checks: list[dict[str, Any]]) -> dict[str, MetricResult]:
    """The metric results of ``checks``, which must not error."""
    results = {}
    for check_id, outcome in run_checks(root, base, tuned, checks).items():
        assert outcome.status is not Status.ERROR, outcome.message
        assert outcome.result is not None
        results[check_id] = outcome.result
    return results


def write_pair(root: Path, base: State, tuned: State, layout: Layout = "dir") -> tuple[Path, Path]:
    suffix = ".safetensors" if layout == "file" else ""
    return (
        write_checkpoint(root / f"base{suffix}", base, layout),
        write_checkpoint(root / f"tuned{suffix}", tuned, layout),
    )


def varied_fractions(names: list[str]) -> dict[str, float]:
    """A different planted fraction for each tensor, so layers and module types differ."""
    return {name: 0.05 + 0.9 * ((index * 7) % 13) / 12 for index, name in enumerate(names)}


def llama_layer(name: str) -> str:
    match = re.match(r"(model\.layers\.\d+)\.", name)
    return match.group(1) if match else "other"


def llama_module(name: str) -> str:
    return re.sub(r"^model\.layers\.\d+\.", "model.layers.*.", name)


def expected_groups(
    changed: Mapping[str, int], numel: Mapping[str, int], key: Callable[[str], str]
) -> dict[str, dict[str, float | int]]:
    """Per group: changed, compared, numel-weighted sparsity/density, unweighted mean, tensors."""
    members: dict[str, list[str]] = {}
    for name in numel:
        members.setdefault(key(name), []).append(name)
    groups: dict[str, dict[str, float | int]] = {}
    for group, names in members.items():
        group_changed = sum(changed[n] for n in names)
        compared = sum(numel[n] for n in names)
        groups[group] = {
            "changed": group_changed,
            "compared": compared,
            "sparsity": 1 - group_changed / compared,
            "density": group_changed / compared,
            "sparsity_mean": sum(1 - changed[n] / numel[n] for n in names) / len(names),
            "tensors": len(names),
        }
    return groups


def assert_group_fields(got: Mapping[str, Any], want: Mapping[str, Any]) -> None:
    for field, value in want.items():
        if isinstance(value, float):
            assert got[field] == pytest.approx(value, rel=1e-12, abs=1e-15), field
        else:
            assert got[field] == value, field


def changed_counts(masks: Mapping[str, torch.Tensor]) -> dict[str, int]:
    return {name: int(mask.sum()) for name, mask in masks.items()}


def numels(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    return {name: tensor.numel() for name, tensor in state.items()}


def wide(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def abs_deltas(base: State, tuned: State) -> torch.Tensor:
    """|Δ| of every entry, in float32 (float64 when either side is float64)."""
    parts = []
    for name, b in base.items():
        t = tuned[name]
        dtype = torch.float64 if torch.float64 in (b.dtype, t.dtype) else torch.float32
        parts.append((t.to(dtype) - b.to(dtype)).abs().reshape(-1).double())
    return torch.cat(parts)


def changed_if_bf16(base: State, tuned: State) -> int:
    """Entries that differ once both sides are rounded to bfloat16 (compared as numbers)."""
    return sum(int((base[n].to(torch.bfloat16) != tuned[n].to(torch.bfloat16)).sum()) for n in base)


CASES = [
    (layout, dtype)
    for layout in ("file", "dir", "sharded", "bin", "bin-sharded")
    for dtype in (torch.bfloat16, torch.float16, torch.float32)
] + [("dir", torch.float64)]


@pytest.mark.parametrize(("layout", "dtype"), CASES, ids=[f"{lay}-{str(d)[6:]}" for lay, d in CASES])
def test_counts_equal_planted_masks(tmp_path: Path, layout: Layout, dtype: torch.dtype) -> None:
    base = tiny_llama_state_dict(dtype=dtype, seed=3)
    tuned, masks = plant_changes(base, varied_fractions(list(base)), seed=4)
    base_path, tuned_path = write_pair(tmp_path, base, tuned, layout)
    results = measure(tmp_path, base_path, tuned_path, [check("atol"), check("exact", policy="exact")])
    changed, numel = changed_counts(masks), numels(base)
    total_changed, total = sum(changed.values()), sum(numel.values())

    for result in results.values():
        fields = result.fields
        assert result.value == fields["sparsity"] == 1 - total_changed / total
        assert fields["density"] == total_changed / total
        assert (fields["changed"], fields["compared"], fields["tensors"]) == (total_changed, total, len(base))
        assert fields["moved"] == total_changed
        assert fields["sparsity_exact"] == 1 - total_changed / total
        assert fields["skipped"] == 0 and result.skipped == []
        assert fields["dtypes"] == str(dtype).removeprefix("torch.")

        deltas = abs_deltas(base, tuned)
        assert fields["abs_delta_max"] == float(deltas.max())
        nonzero = deltas[deltas > 0]
        for q in (0.5, 0.9, 0.99):
            true_q = float(torch.quantile(nonzero, q, interpolation="lower"))
            approximate = fields[f"abs_delta_p{round(q * 100)}"]
            assert isinstance(approximate, float)
            assert true_q / 1.25 <= approximate <= true_q * 1.25
        if dtype == torch.bfloat16:
            assert "sparsity_if_bf16" not in fields
        else:
            assert fields["sparsity_if_bf16"] == 1 - changed_if_bf16(base, tuned) / total

        tensors = result.groups["tensor"]
        assert list(tensors) == sorted(
            base, key=lambda n: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", n)]
        )
        for name, fields_of_tensor in tensors.items():
            assert_group_fields(
                fields_of_tensor,
                {
                    "changed": changed[name],
                    "compared": numel[name],
                    "sparsity": 1 - changed[name] / numel[name],
                    "density": changed[name] / numel[name],
                    "skipped": 0,
                },
            )
        for granularity, key in (("layer", llama_layer), ("module", llama_module)):
            want = expected_groups(changed, numel, key)
            assert set(result.groups[granularity]) == set(want)
            for group, fields_of_group in result.groups[granularity].items():
                assert_group_fields(fields_of_group, want[group])
        assert list(result.groups["layer"]) == ["model.layers.0", "model.layers.1", "other"]
        assert "model.layers.*.mlp.up_proj.weight" in result.groups["module"]


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(layers=3, seed=5)
    tuned, masks = plant_changes(base, varied_fractions(list(base)), seed=6)
    base_path, tuned_path = write_pair(tmp_path, base, tuned)
    include, exclude = ["*.mlp.*", "*norm*"], ["*down_proj*", "model.norm.weight"]
    results = measure(
        tmp_path,
        base_path,
        tuned_path,
        [check("selected", include=include, exclude=exclude), check("norms", include=["*layernorm*"])],
    )
    for check_id, inc, exc in (("selected", include, exclude), ("norms", ["*layernorm*"], [])):
        names = [
            n for n in base if any(fnmatchcase(n, p) for p in inc) and not any(fnmatchcase(n, p) for p in exc)
        ]
        assert names  # the globs select something
        result = results[check_id]
        assert set(result.groups["tensor"]) == set(names)
        assert result.fields["tensors"] == len(names)
        assert result.fields["compared"] == sum(base[n].numel() for n in names)
        assert result.fields["changed"] == sum(int(masks[n].sum()) for n in names)


def tiny_bf16_pair(names: list[str], shapes: list[torch.Size]) -> tuple[State, State, State]:
    """bf16 weights of magnitude ~1e-3 and a copy with a planted one-step (ulp) change."""
    generator = torch.Generator().manual_seed(7)
    base, tuned, masks = {}, {}, {}
    for name, shape in zip(names, shapes, strict=True):
        sign = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
        values = (sign * 1e-3 * (1 + 0.5 * torch.rand(shape, generator=generator))).to(torch.bfloat16)
        mask = torch.rand(shape, generator=generator) < 0.3
        bits = values.view(torch.int16)
        base[name] = values
        tuned[name] = torch.where(mask, bits + 1, bits).view(torch.bfloat16)  # one step away from zero
        masks[name] = mask
    return base, tuned, masks


def test_tiny_bf16_weights_exact_counts_what_atol_misses(tmp_path: Path) -> None:
    llama = tiny_llama_state_dict(layers=1)
    base, tuned, masks = tiny_bf16_pair(list(llama), [t.shape for t in llama.values()])
    base_path, tuned_path = write_pair(tmp_path, base, tuned, "sharded")
    results = measure(
        tmp_path,
        base_path,
        tuned_path,
        [
            check("exact", policy="exact"),
            check("atol"),
            check("rtol", policy="rtol"),
            check("rtol2", policy="rtol", tol=1e-2),
        ],
    )
    planted = sum(changed_counts(masks).values())
    deltas = abs_deltas(base, tuned)
    assert planted > 0
    assert int((deltas > 0).sum()) == planted
    # A bf16 step at 1e-3 is below the default atol tolerance: the case where they disagree.
    assert int((deltas > DEFAULT_ATOL).sum()) == 0
    assert results["exact"].fields["changed"] == planted
    assert results["atol"].fields["changed"] == 0
    assert results["atol"].value == 1.0
    assert results["atol"].fields["moved"] == planted  # moved counts stored differences under any policy
    assert results["atol"].fields["sparsity_exact"] == results["exact"].value
    # rtol with eta < 2^-9 equals exact in bf16; eta = 1e-2 exceeds one step's relative size.
    assert results["rtol"].fields["changed"] == planted
    largest = torch.maximum(
        torch.cat([base[n].float().abs().reshape(-1) for n in base]),
        torch.cat([tuned[n].float().abs().reshape(-1) for n in base]),
    )
    assert results["rtol2"].fields["changed"] == int((deltas > 1e-2 * largest.double()).sum()) == 0


def test_rtol_counts_relative_changes(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(seed=8)
    generator = torch.Generator().manual_seed(9)
    tuned, big = {}, {}
    for name, tensor in base.items():
        moved = torch.rand(tensor.shape, generator=generator) < 0.6
        kind = torch.randint(0, 3, tensor.shape, generator=generator)
        large = moved & (kind == 0)
        # |Δ| = 1.0005e-3·|a| is below 1e-3·max(|a|, |b|) = 1.0010005e-3·|a|: unchanged under rtol.
        relative = torch.tensor([1e-2, 1.0005e-3, 1e-4])[kind]
        tuned[name] = torch.where(moved, tensor * (1 + relative), tensor)
        big[name] = large
    base_path, tuned_path = write_pair(tmp_path, base, tuned)
    results = measure(
        tmp_path, base_path, tuned_path, [check("rtol", policy="rtol"), check("exact", policy="exact")]
    )
    reference = sum(
        int(((tuned[n] - base[n]).abs() > 1e-3 * torch.maximum(tuned[n].abs(), base[n].abs())).sum())
        for n in base
    )
    assert results["rtol"].fields["changed"] == reference == sum(int(m.sum()) for m in big.values())
    assert results["exact"].fields["changed"] == sum(int((tuned[n] != base[n]).sum()) for n in base)
    assert results["rtol"].fields["changed"] < results["exact"].fields["changed"]


@pytest.mark.parametrize(
    ("base_dtype", "tuned_dtype", "compute"),
    [(torch.float32, torch.bfloat16, "float32"), (torch.float64, torch.float32, "float64")],
    ids=["fp32-vs-bf16", "fp64-vs-fp32"],
)
def test_dtype_mixed_pair(
    tmp_path: Path, base_dtype: torch.dtype, tuned_dtype: torch.dtype, compute: str
) -> None:
    base = tiny_llama_state_dict(dtype=base_dtype, seed=10)
    cast = {name: tensor.to(tuned_dtype) for name, tensor in base.items()}
    tuned, masks = plant_changes(cast, 0.2, seed=11)
    base_path, tuned_path = write_pair(tmp_path, base, tuned)
    results = measure(tmp_path, base_path, tuned_path, [check("atol"), check("exact", policy="exact")])
    work = getattr(torch, compute)
    total = sum(t.numel() for t in base.values())
    deltas = {n: (tuned[n].to(work) - base[n].to(work)).abs() for n in base}
    for result in results.values():
        assert result.notes == [
            f"{len(base)} tensor(s) stored in different dtypes "
            f"({str(base_dtype)[6:]} vs {str(tuned_dtype)[6:]}): compared in {compute}"
        ]
        assert result.fields["dtypes"] == f"{str(base_dtype)[6:]} vs {str(tuned_dtype)[6:]}"
        assert result.fields["abs_delta_max"] == max(float(d.max()) for d in deltas.values())
        assert result.fields["moved"] == sum(int((d != 0).sum()) for d in deltas.values())
        # Rounding the wide base to bf16 recovers the tuned side wherever nothing was planted.
        if tuned_dtype == torch.bfloat16:
            planted = sum(changed_counts(masks).values())
            assert result.fields["sparsity_if_bf16"] == 1 - planted / total
        assert result.fields["sparsity_if_bf16"] == 1 - changed_if_bf16(base, tuned) / total
    atol = sum(int((d > DEFAULT_ATOL).sum()) for d in deltas.values())
    assert results["atol"].fields["changed"] == atol
    assert results["exact"].fields["changed"] == results["exact"].fields["moved"]
    for name, fields in results["atol"].groups["tensor"].items():
        assert fields["changed"] == int((deltas[name] > DEFAULT_ATOL).sum())


def test_sparsity_if_bf16_shows_the_storage_effect(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(seed=12)
    generator = torch.Generator().manual_seed(13)
    tuned = {}
    for name, tensor in base.items():
        step = 1e-4 * tensor.abs() * torch.randn(tensor.shape, generator=generator)  # far below a bf16 step
        tuned[name] = torch.where(torch.rand(tensor.shape, generator=generator) < 0.5, tensor + step, tensor)
    # Opposite tiny values: different in fp32, +0 and -0 (equal) once rounded to bf16.
    base["model.norm.weight"][:2] = torch.tensor([1e-45, 0.0])
    tuned["model.norm.weight"][:2] = torch.tensor([-1e-45, -0.0])
    base_path, tuned_path = write_pair(tmp_path, base, tuned, "sharded")
    result = measure(tmp_path, base_path, tuned_path, [check("exact", policy="exact")])["exact"]
    total = sum(t.numel() for t in base.values())
    assert result.fields["sparsity"] == 1 - sum(int((tuned[n] != base[n]).sum()) for n in base) / total
    assert result.fields["sparsity_if_bf16"] == 1 - changed_if_bf16(base, tuned) / total
    assert result.fields["sparsity_if_bf16"] > result.fields["sparsity"] + 0.3  # most updates vanish in bf16


def test_mismatched_tensors_error_by_default_and_are_listed_when_skipped(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(seed=14)
    tuned, masks = plant_changes(base, 0.25, seed=15)
    resized = ("model.embed_tokens.weight", "lm_head.weight")
    for name in resized:  # a resized vocabulary
        tuned[name] = torch.cat([tuned[name], torch.zeros(8, tuned[name].shape[1])])
    extra = "model.layers.0.self_attn.rotary_emb.inv_freq"
    tuned[extra] = torch.ones(8)
    base_path, tuned_path = write_pair(tmp_path, base, tuned)
    outcomes = run_checks(
        tmp_path, base_path, tuned_path, [check("strict"), check("skip", on_mismatch="skip")]
    )

    strict = outcomes["strict"]
    assert strict.status is Status.ERROR and strict.error_kind == "usage"
    assert "on_mismatch: skip" in strict.message
    assert extra in strict.message and "shape" in strict.message

    result = outcomes["skip"].result
    assert outcomes["skip"].status is Status.PASS and result is not None
    assert [s.name for s in result.skipped] == sorted([*resized, extra])
    reasons = {s.name: s.reason for s in result.skipped}
    assert all(reasons[name].startswith("shape (64, 16)") for name in resized)
    assert reasons[extra].startswith("only in")
    assert result.fields["skipped"] == 3
    kept = [n for n in base if n not in resized]
    assert set(result.groups["tensor"]) == set(kept)
    assert result.fields["compared"] == sum(base[n].numel() for n in kept)
    assert result.fields["changed"] == sum(int(masks[n].sum()) for n in kept)
    layers = result.groups["layer"]
    assert (
        layers["other"]["skipped"],
        layers["model.layers.0"]["skipped"],
        layers["model.layers.1"]["skipped"],
    ) == (
        2,
        1,
        0,
    )


def test_per_layer_with_mostly(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(layers=4, seed=16)
    dense = "model.layers.1."
    tuned, masks = plant_changes(base, {n: 0.9 if n.startswith(dense) else 0.1 for n in base}, seed=17)
    base_path, tuned_path = write_pair(tmp_path, base, tuned, "sharded")
    layers = expected_groups(changed_counts(masks), numels(base), llama_layer)
    passing = [layer for layer, fields in layers.items() if fields["sparsity"] >= 0.5]
    assert sorted(set(layers) - set(passing)) == ["model.layers.1"]  # the design of this pair
    share = len(passing) / len(layers)
    per_layer = {"per": "layer", "expect": {"ge": 0.5}}
    outcomes = run_checks(
        tmp_path,
        base_path,
        tuned_path,
        [
            {**check("enough"), **per_layer, "mostly": share},
            {**check("too-few"), **per_layer, "mostly": share + 0.5 / len(layers)},
            {**check("all"), **per_layer},
            {
                **check("unweighted"),
                "per": "layer",
                "expect": {"field": "sparsity_mean", "ge": 0.5},
                "mostly": share,
            },
        ],
    )
    assert outcomes["enough"].status is Status.PASS
    assert outcomes["enough"].value == pytest.approx(share)
    for failing in ("too-few", "all"):
        assert outcomes[failing].status is Status.FAIL
        assert outcomes[failing].value == pytest.approx(share)
        assert "model.layers.1" in outcomes[failing].message
    assert outcomes["unweighted"].status is Status.PASS


def test_tied_weights_are_compared_once(tmp_path: Path) -> None:
    untied = tiny_llama_state_dict(seed=18)
    del untied["lm_head.weight"]
    tuned, masks = plant_changes(untied, varied_fractions(list(untied)), seed=19)
    embed = "model.embed_tokens.weight"

    def tied(state: State) -> State:
        return {**state, "lm_head.weight": state[embed]}  # one storage under two names

    base_bin = write_checkpoint(tmp_path / "base-bin", tied(untied), "bin")
    tuned_bin = write_checkpoint(tmp_path / "tuned-bin", tied(tuned), "bin")
    tuned_once = write_checkpoint(tmp_path / "tuned-st", tuned, "dir")  # save_pretrained's safetensors
    numel, changed = numels(untied), changed_counts(masks)
    for label, tuned_path in (("bin-vs-safetensors", tuned_once), ("bin-vs-bin", tuned_bin)):
        root = tmp_path / label
        root.mkdir()
        result = measure(root, base_bin, tuned_path, [check("tied")])["tied"]
        compared = set(result.groups["tensor"])
        assert len(compared & {embed, "lm_head.weight"}) == 1, label
        name = next(iter(compared & {embed, "lm_head.weight"}))
        assert compared - {name} == set(untied) - {embed}
        assert result.groups["tensor"][name]["changed"] == changed[embed]
        assert result.fields["tensors"] == len(untied)
        assert result.fields["compared"] == sum(numel.values())
        assert result.fields["changed"] == sum(changed.values())
        assert result.skipped == []
        assert any("tied to" in note and "compared once" in note for note in result.notes), result.notes
