"""mask_overlap against planted masks with known intersections, and the hypergeometric
statistics against exact sums of binomial coefficients."""

from __future__ import annotations

import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sparsecheck._dtypes import from_torch_dtype
from sparsecheck._manager import get_plugin_manager
from sparsecheck.checkpoints._open import open_checkpoint
from sparsecheck.engine._outcome import Status
from sparsecheck.metrics import _strata as strata_module
from sparsecheck.metrics._api import MetricResult
from sparsecheck.metrics._equality import EqualityPolicy, compare_arrays
from sparsecheck.metrics._hypergeom import log10_upper_tail, log_pmf, z_score
from sparsecheck.metrics._maskfile import MaskWriter, mask_metadata
from sparsecheck.metrics._strata import stratum_counts, stratum_ids
from sparsecheck.testing import plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint

Masks = dict[str, np.ndarray]

# --- the hypergeometric null, against exact integer arithmetic ----------------------------------


def exact_log10_tail(k: int, population: int, marked: int, drawn: int) -> float:
    top = sum(
        math.comb(marked, x) * math.comb(population - marked, drawn - x)
        for x in range(max(k, 0), min(marked, drawn) + 1)
    )
    return -math.inf if top == 0 else math.log10(top) - math.log10(math.comb(population, drawn))


def exact_z(k: int, population: int, marked: int, drawn: int) -> float:
    """(k − mean) / sd from the exact distribution's first two moments."""
    total = math.comb(population, drawn)
    support = range(max(0, drawn - population + marked), min(marked, drawn) + 1)
    pmf = {
        x: Fraction(math.comb(marked, x) * math.comb(population - marked, drawn - x), total) for x in support
    }
    mean = sum(x * p for x, p in pmf.items())
    variance = sum((x - mean) ** 2 * p for x, p in pmf.items())
    return float((k - mean) / Fraction(math.sqrt(variance))) if variance else math.nan


def test_upper_tail_matches_exact_sums_on_small_populations() -> None:
    rng = random.Random(3)
    for _ in range(400):
        population = rng.randint(1, 120)
        marked, drawn = rng.randint(0, population), rng.randint(0, population)
        k = rng.randint(-1, min(marked, drawn) + 1)
        got, want = (
            log10_upper_tail(k, population, marked, drawn),
            exact_log10_tail(k, population, marked, drawn),
        )
        if math.isinf(want):
            assert got == want
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (k, population, marked, drawn)


def test_pmf_sums_to_one_and_tail_is_one_at_the_bottom() -> None:
    population, marked, drawn = 300, 120, 77
    assert sum(math.exp(log_pmf(x, population, marked, drawn)) for x in range(78)) == pytest.approx(1.0)
    assert log10_upper_tail(0, population, marked, drawn) == 0.0
    assert log10_upper_tail(78, population, marked, drawn) == -math.inf


@pytest.mark.parametrize(
    ("k", "population", "marked", "drawn"), [(30, 200, 60, 70), (2, 50, 10, 5), (90, 400, 200, 150)]
)
def test_z_score_matches_exact_moments(k: int, population: int, marked: int, drawn: int) -> None:
    assert z_score(k, population, marked, drawn) == pytest.approx(exact_z(k, population, marked, drawn))


def test_z_score_is_nan_without_variance() -> None:
    assert math.isnan(z_score(5, 10, 5, 10))
    assert math.isnan(z_score(0, 10, 0, 4))


@pytest.mark.parametrize(
    ("k", "marked", "drawn"), [(3, 20, 30), (1, 20, 30), (2, 2000, 3000), (12, 100, 100)]
)
def test_upper_tail_keeps_precision_for_a_population_of_1e11(k: int, marked: int, drawn: int) -> None:
    population = 10**11
    want = exact_log10_tail(k, population, marked, drawn)
    assert log10_upper_tail(k, population, marked, drawn) == pytest.approx(want, rel=1e-9)


def test_upper_tail_is_fast_and_sane_near_the_mean_of_a_huge_population() -> None:
    population, marked, drawn = 10**11, 5 * 10**10, 3 * 10**10
    mean = marked * drawn // population
    at_mean = log10_upper_tail(mean, population, marked, drawn)
    assert math.log10(0.45) < at_mean < math.log10(0.55)
    sd = math.sqrt(drawn * 0.5 * 0.5 * 0.7)
    five_sd = log10_upper_tail(mean + round(5 * sd), population, marked, drawn)
    assert five_sd == pytest.approx(math.log10(2.87e-7), abs=0.02)  # the normal tail at 5 sd


# --- strata: the binary exponent of the stored base value ---------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_strata_are_binary_exponents_with_zeros_and_nonfinite_apart(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(2000, generator=g) * 10.0 ** torch.randint(-3, 4, (2000,), generator=g)
    values[:6] = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1.0])
    stored = values.to(dtype)
    array = stored.view(torch.int16).numpy().view(np.uint16) if dtype == torch.bfloat16 else stored.numpy()
    ids = stratum_ids(array, from_torch_dtype(dtype))
    wide = stored.double().numpy()
    assert ids[0] == ids[1] and len({ids[0], ids[2], ids[5]}) == 3
    assert ids[2] == ids[3] == ids[4]
    normal = np.abs(wide) >= torch.finfo(dtype).tiny
    normal[:6] = False
    exponents = np.frexp(np.abs(wide[normal]))[1]
    same_stratum = ids[normal][:, None] == ids[normal][None, :]
    assert np.array_equal(same_stratum, exponents[:, None] == exponents[None, :])
    assert not np.isin(ids[6:], ids[:5]).any()
    subnormal = ids[6:][~normal[6:]]  # float16 has some: they share their exponent field's stratum
    assert len(set(subnormal.tolist())) <= 1 and not np.isin(subnormal, ids[normal]).any()
    if dtype != torch.float16:  # equal exponents of different dtypes share a stratum
        as_fp32 = stratum_ids(stored.float().numpy(), "float32")
        assert np.array_equal(as_fp32, ids)


@pytest.mark.parametrize(
    "dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.float8_e4m3fn, torch.int32]
)
def test_stratum_counts_agree_with_counting_each_entry(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(strata_module, "CHUNK", 64)  # many chunks, some without zeros
    g = torch.Generator().manual_seed(1)
    n = 1000
    values = torch.randn(n, generator=g) * 10.0 ** torch.randint(-6, 3, (n,), generator=g)
    values[::97] = 0.0
    values[5:9] = torch.tensor([float("inf"), float("nan"), -0.0, 1e-42])
    stored = values.to(dtype) if dtype.is_floating_point else (values * 100).to(dtype)
    storage = {torch.bfloat16: torch.int16, torch.float8_e4m3fn: torch.uint8}.get(dtype)
    array = stored.numpy() if storage is None else stored.view(storage).numpy()
    array = array.view(np.uint16) if dtype == torch.bfloat16 else array
    mask_a = (torch.rand(n, generator=g) < 0.3).numpy()
    mask_b = (torch.rand(n, generator=g) < 0.5).numpy()
    got = stratum_counts(array, from_torch_dtype(dtype), mask_a, mask_b)
    ids = stratum_ids(array, from_torch_dtype(dtype))
    kept = np.unique(ids)
    assert np.array_equal(got.ids, kept)
    assert np.array_equal(got.total, [np.count_nonzero(ids == k) for k in kept])
    assert np.array_equal(got.changed_a, [np.count_nonzero((ids == k) & mask_a) for k in kept])
    assert np.array_equal(got.changed_b, [np.count_nonzero((ids == k) & mask_b) for k in kept])
    assert got.both == np.count_nonzero(mask_a & mask_b)


# --- planted runs ----------------------------------------------------------------------------


def planted_base() -> dict[str, torch.Tensor]:
    """A tiny Llama in bf16 whose values span six binary decades, with some ±0."""
    state = tiny_llama_state_dict(layers=2, hidden=8, intermediate=16, vocab=16)
    g = torch.Generator().manual_seed(5)
    spread = {}
    for name, t in state.items():
        scale = 10.0 ** torch.randint(-4, 2, t.shape, generator=g)
        values = t * scale
        values[torch.rand(t.shape, generator=g) < 0.05] = 0.0
        values[torch.rand(t.shape, generator=g) < 0.02] = -0.0
        spread[name] = values.to(torch.bfloat16)
    return spread


def planted_masks(base: dict[str, torch.Tensor], seed: int = 0) -> tuple[Masks, Masks]:
    """Masks with exact counts per tensor; their intersection sits among the smaller weights, so
    the magnitude-matched chance exceeds the uniform one."""
    rng = np.random.default_rng(seed)
    masks_a: Masks = {}
    masks_b: Masks = {}
    for name, t in base.items():
        values = t.float().numpy().reshape(-1)
        n = values.size
        order = np.argsort(np.abs(values), kind="stable")
        both = rng.choice(order[: n // 2], size=n // 5, replace=False)
        rest = rng.permutation(np.setdiff1d(order, both))
        only_a, only_b = rest[: n // 10], rest[n // 10 : n // 10 + n // 8]
        a, b = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        a[both] = b[both] = a[only_a] = b[only_b] = True
        masks_a[name], masks_b[name] = a.reshape(t.shape), b.reshape(t.shape)
    return masks_a, masks_b


def tuned_copy(
    base: dict[str, torch.Tensor], masks: Masks, moved: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    return {name: torch.where(torch.from_numpy(masks[name]), moved[name], t) for name, t in base.items()}


class Planted:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = planted_base()
        self.masks_a, self.masks_b = planted_masks(self.base)
        moved, _ = plant_changes(self.base, 1.0, seed=9)  # every entry moved by more than 1e-5
        write_checkpoint(root / "base", self.base)
        write_checkpoint(root / "run_a", tuned_copy(self.base, self.masks_a, moved))
        write_checkpoint(root / "run_b", tuned_copy(self.base, self.masks_b, moved))

    def spec(self, checks: str, name: str = "overlap") -> Path:
        path = self.root / f"{name}.sparsecheck.yaml"
        path.write_text(
            "version: 1\ncheckpoints: {base: base, run_a: run_a, run_b: run_b}\nchecks:\n" + checks
        )
        return path


def reference_fields(planted: Planted, names: list[str], matched: bool = True) -> dict[str, Any]:
    """METRICS.md spelled out on the planted masks of ``names`` taken together."""
    a = np.concatenate([planted.masks_a[n].reshape(-1) for n in names])
    b = np.concatenate([planted.masks_b[n].reshape(-1) for n in names])
    n, ca, cb, both = a.size, int(a.sum()), int(b.sum()), int((a & b).sum())
    fields: dict[str, Any] = {
        "o1": both / ca,
        "o2": both / cb,
        "baseline_o1": cb / n,
        "baseline_o2": ca / n,
        "lift_o1": (both / ca) / (cb / n),
        "lift_o2": (both / cb) / (ca / n),
        "jaccard": both / int((a | b).sum()),
        "intersection": both,
        "changed_a": ca,
        "changed_b": cb,
        "compared": n,
        "z_score": exact_z(both, n, ca, cb),
        "log10_p": exact_log10_tail(both, n, ca, cb),
    }
    if matched:
        values = np.concatenate([planted.base[n].float().numpy().reshape(-1) for n in names])
        stratum = np.where(values == 0, -1000, np.frexp(np.abs(values))[1])
        expected = sum(
            int(a[stratum == s].sum()) * int(b[stratum == s].sum()) / int((stratum == s).sum())
            for s in np.unique(stratum)
        )
        fields["baseline_o1_matched"] = expected / ca
        fields["baseline_o2_matched"] = expected / cb
        fields["lift_o1_matched"] = (both / ca) / (expected / ca)
        fields["lift_o2_matched"] = (both / cb) / (expected / cb)
    return fields


def assert_fields(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if isinstance(value, int):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9), key


def only_result(spec: Path) -> MetricResult:
    (outcome,) = run_spec(spec).outcomes
    assert outcome.status == Status.PASS, outcome.message
    assert outcome.result is not None
    return outcome.result


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    return Planted(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def from_runs(planted: Planted) -> MetricResult:
    spec = planted.spec(
        "  - id: runs\n    metric: mask_overlap\n"
        "    args: {base: base, run_a: run_a, run_b: run_b, policy: exact}\n"
        "    expect: [{field: o1, gt: {field: baseline_o1}}, {gt: 1.5}]\n",
        name="runs",
    )
    return only_result(spec)


def test_global_overlap_baselines_and_significance_are_exact(
    planted: Planted, from_runs: MetricResult
) -> None:
    want = reference_fields(planted, list(planted.base))
    assert_fields(dict(from_runs.fields), want)
    assert from_runs.value == pytest.approx(want["lift_o1"])
    # The planted intersection lies among small weights: the matched chance is well above uniform.
    assert want["baseline_o1_matched"] > 1.2 * want["baseline_o1"]
    assert from_runs.fields["masks"] == "checkpoints" and from_runs.fields["policy"] == "exact"


def test_each_layer_module_and_tensor_has_its_own_baselines(
    planted: Planted, from_runs: MetricResult
) -> None:
    names = list(planted.base)
    layer0 = [n for n in names if n.startswith("model.layers.0.")]
    others = [n for n in names if not n.startswith("model.layers.")]
    up_proj = [n for n in names if n.endswith("mlp.up_proj.weight")]
    groups = from_runs.groups
    assert_fields(dict(groups["layer"]["model.layers.0"]), reference_fields(planted, layer0))
    assert_fields(dict(groups["layer"]["other"]), reference_fields(planted, others))
    assert_fields(
        dict(groups["module"]["model.layers.*.mlp.up_proj.weight"]), reference_fields(planted, up_proj)
    )
    for name in ("lm_head.weight", "model.layers.1.self_attn.k_proj.weight"):
        assert_fields(dict(groups["tensor"][name]), reference_fields(planted, [name]))
    assert groups["layer"]["model.layers.0"]["tensors"] == len(layer0)
    assert set(groups["tensor"]) == set(names)


def write_mask_file(planted: Planted, run: str, path: Path, names: list[str] | None = None) -> None:
    """What ``sparsecheck mask`` does: compare base and run, write the masks with metadata."""
    hook = get_plugin_manager().hook
    base = open_checkpoint(hook, str(planted.root / "base"), planted.root)
    tuned = open_checkpoint(hook, str(planted.root / run), planted.root)
    policy = EqualityPolicy("exact", 0.0)
    with MaskWriter(path, mask_metadata(policy, base, tuned)) as writer:
        for name in names or list(base.tensors()):
            meta_a, meta_b = base.tensors()[name].meta, tuned.tensors()[name].meta
            comparison = compare_arrays(base.read(name), meta_a.dtype, tuned.read(name), meta_b.dtype, policy)
            writer.add(name, comparison.mask)
    base.close()
    tuned.close()


@pytest.fixture(scope="module")
def mask_files(planted: Planted) -> Path:
    folder = planted.root / "masks"
    folder.mkdir()
    write_mask_file(planted, "run_a", folder / "a.safetensors")
    write_mask_file(planted, "run_b", folder / "b.safetensors")
    return folder


def test_mask_files_alone_give_the_overlap_of_the_checkpoints(
    planted: Planted, from_runs: MetricResult, mask_files: Path
) -> None:
    spec = planted.spec(
        "  - id: files\n    metric: mask_overlap\n"
        "    args: {mask_a: masks/a.safetensors, mask_b: masks/b.safetensors}\n",
        name="files",
    )
    result = only_result(spec)
    unmatched = reference_fields(planted, list(planted.base), matched=False)
    assert_fields(dict(result.fields), unmatched)
    for key in ("baseline_o1_matched", "baseline_o2_matched", "lift_o1_matched", "lift_o2_matched"):
        assert result.fields[key] is None
    assert any("no base given" in note for note in result.notes)
    assert result.fields["masks"] == "mask files" and result.fields["policy"] == "exact"
    for granularity, groups in from_runs.groups.items():
        for key, fields in groups.items():
            assert_fields(dict(result.groups[granularity][key]), {k: fields[k] for k in unmatched})


def test_mask_files_with_base_give_the_matched_baseline_too(
    planted: Planted, from_runs: MetricResult, mask_files: Path
) -> None:
    spec = planted.spec(
        "  - id: files-base\n    metric: mask_overlap\n"
        "    args: {base: base, mask_a: masks/a.safetensors, mask_b: masks/b.safetensors}\n",
        name="files_base",
    )
    result = only_result(spec)
    assert_fields(dict(result.fields), reference_fields(planted, list(planted.base)))
    assert result.groups.keys() == from_runs.groups.keys()
    for granularity, groups in from_runs.groups.items():
        for key, fields in groups.items():
            assert_fields(dict(result.groups[granularity][key]), dict(fields))


def test_a_tensor_missing_from_the_mask_files_is_an_error_or_skipped(planted: Planted) -> None:
    folder = planted.root / "partial"
    folder.mkdir()
    kept = [n for n in planted.base if n != "lm_head.weight"]
    write_mask_file(planted, "run_a", folder / "a.safetensors", kept)
    write_mask_file(planted, "run_b", folder / "b.safetensors", kept)
    args = "base: base, mask_a: partial/a.safetensors, mask_b: partial/b.safetensors"
    spec = planted.spec(
        f"  - {{id: strict, metric: mask_overlap, args: {{{args}}}}}\n"
        f"  - {{id: lenient, metric: mask_overlap, args: {{{args}, on_mismatch: skip}}}}\n",
        name="partial",
    )
    strict, lenient = run_spec(spec).outcomes
    assert strict.status == Status.ERROR
    assert "lm_head.weight: in base, not in the mask files" in strict.message
    assert lenient.status == Status.PASS and lenient.result is not None
    assert [s.name for s in lenient.result.skipped] == ["lm_head.weight"]
    assert_fields(dict(lenient.result.fields), reference_fields(planted, kept))


def test_a_run_that_changed_nothing_gives_nan_and_says_why(planted: Planted) -> None:
    spec = planted.spec(
        "  - id: still\n    metric: mask_overlap\n"
        "    args: {base: base, run_a: run_a, run_b: base, policy: exact}\n",
        name="still",
    )
    (outcome,) = run_spec(spec).outcomes
    assert outcome.result is not None
    fields = outcome.result.fields
    assert fields["changed_b"] == 0 and fields["intersection"] == 0
    assert fields["o1"] == 0.0 and fields["baseline_o1"] == 0.0
    for key in ("o2", "lift_o1", "lift_o2", "z_score", "lift_o1_matched"):
        assert math.isnan(fields[key]), key  # type: ignore[arg-type]
    assert fields["log10_p"] == 0.0
    assert any("run_b changed no entry" in note for note in outcome.result.notes)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ("run_a: run_a, run_b: run_b", "run_a and run_b need base"),
        ("base: base, run_a: run_a", "only run_a given"),
        ("base: base", "no runs and no mask files given"),
        ("base: base, run_a: run_a, run_b: run_b, mask_a: x.safetensors", "not both"),
    ],
)
def test_argument_combinations_that_make_no_sense_are_errors(
    planted: Planted, args: str, problem: str
) -> None:
    spec = planted.spec(f"  - {{id: bad, metric: mask_overlap, args: {{{args}}}}}\n", name="bad")
    (outcome,) = run_spec(spec).outcomes
    assert outcome.status == Status.ERROR
    assert problem in outcome.message


def test_a_checkpoint_given_as_mask_file_is_named(planted: Planted) -> None:
    spec = planted.spec(
        "  - id: wrong\n    metric: mask_overlap\n"
        "    args: {mask_a: run_a/model.safetensors, mask_b: run_b/model.safetensors}\n",
        name="wrong",
    )
    (outcome,) = run_spec(spec).outcomes
    assert outcome.status == Status.ERROR
    assert f"{planted.root / 'run_a' / 'model.safetensors'}: not a sparsecheck mask file" in outcome.message
