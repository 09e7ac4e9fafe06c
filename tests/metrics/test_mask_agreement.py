"""mask_agreement against planted masks with known per-entry counts, and its null against exact
enumeration of random placements."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sparsecheck.engine._outcome import Status
from sparsecheck.metrics._agreement_null import (
    all_changed_moments,
    count_distribution,
    log10_all_changed_bound,
)
from sparsecheck.metrics._api import MetricResult
from sparsecheck.metrics._hypergeom import log10_upper_tail
from sparsecheck.metrics._maskfile import MaskWriter
from sparsecheck.testing import plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint

Masks = dict[str, np.ndarray]
RUNS = 3

# --- the null, against enumeration of every placement --------------------------------------------


def poisson_binomial(p: list[Fraction], k: int) -> Fraction:
    """P(exactly k of independent events with chances ``p``), summed over the subsets of size k."""
    total = Fraction(0)
    for chosen in itertools.combinations(range(len(p)), k):
        term = Fraction(1)
        for j, pj in enumerate(p):
            term *= pj if j in chosen else 1 - pj
        total += term
    return total


def placement_distribution(t: int, sizes: list[int]) -> dict[int, Fraction]:
    """The exact distribution of |m_1 ∧ … ∧ m_N| when mask j is a uniform random a_j-subset of t."""
    dist: dict[int, Fraction] = {}
    choices = [list(itertools.combinations(range(t), a)) for a in sizes]
    weight = Fraction(1, math.prod(len(c) for c in choices))
    for picks in itertools.product(*choices):
        common = len(set.intersection(*(set(p) for p in picks)))
        dist[common] = dist.get(common, Fraction(0)) + weight
    return dist


def convolve(a: dict[int, Fraction], b: dict[int, Fraction]) -> dict[int, Fraction]:
    out: dict[int, Fraction] = {}
    for x, px in a.items():
        for y, py in b.items():
            out[x + y] = out.get(x + y, Fraction(0)) + px * py
    return out


STRATA_CASES = [
    ([5], [[2, 3, 4]]),
    ([4, 5], [[1, 2], [3, 3]]),
    ([6, 3], [[3, 4, 2], [1, 3, 2]]),
    ([5, 4], [[5, 2, 3], [0, 2, 1]]),
]


@pytest.mark.parametrize(("totals", "sizes"), STRATA_CASES)
def test_null_moments_count_distribution_and_tail_bound_match_enumeration(
    totals: list[int], sizes: list[list[int]]
) -> None:
    total, changed = np.array(totals), np.array(sizes)
    runs = changed.shape[1]
    want_counts = [
        sum(
            t * poisson_binomial([Fraction(a, t) for a in row], k)
            for t, row in zip(totals, sizes, strict=True)
        )
        for k in range(runs + 1)
    ]
    assert count_distribution(total, changed) == pytest.approx([float(w) for w in want_counts], rel=1e-12)
    dist = {0: Fraction(1)}
    for t, row in zip(totals, sizes, strict=True):
        dist = convolve(dist, placement_distribution(t, row))
    mean = sum(x * p for x, p in dist.items())
    variance = sum((x - mean) ** 2 * p for x, p in dist.items())
    got_mean, got_variance = all_changed_moments(total, changed)
    assert got_mean == pytest.approx(float(mean), rel=1e-12)
    assert got_variance == pytest.approx(float(variance), rel=1e-9, abs=1e-12)
    for k in range(max(dist) + 2):
        tail = sum((p for x, p in dist.items() if x >= k), Fraction(0))
        bound = log10_all_changed_bound(k, total, changed)
        if tail == 0:
            assert bound == -math.inf
        else:
            assert bound >= math.log10(tail) - 1e-12, k  # a valid p-value: never below the true tail


@pytest.mark.parametrize(
    ("n", "a", "b", "k"),
    [
        (10**6, 10**5, 2 * 10**5, 20600),
        (10**5, 3000, 5000, 300),
        (10**5, 3000, 5000, 200),
        (10**7, 10**6, 10**6, 102000),
    ],
)
def test_tail_bound_of_two_runs_is_above_the_exact_hypergeometric_tail_and_keeps_half_its_decades(
    n: int, a: int, b: int, k: int
) -> None:
    exact = log10_upper_tail(k, n, a, b)
    bound = log10_all_changed_bound(k, np.array([n]), np.array([[a, b]]))
    # Conservative (the Bernoulli bound ignores the finite-population correction) but not idle.
    assert exact <= bound <= 0.5 * exact


# --- planted runs -----------------------------------------------------------------------------


def planted_base() -> dict[str, torch.Tensor]:
    """A tiny Llama in bf16 whose values span six binary decades, with some zeros."""
    state = tiny_llama_state_dict(layers=2, hidden=8, intermediate=16, vocab=16)
    g = torch.Generator().manual_seed(5)
    spread = {}
    for name, t in state.items():
        values = t * 10.0 ** torch.randint(-4, 2, t.shape, generator=g)
        values[torch.rand(t.shape, generator=g) < 0.05] = 0.0
        spread[name] = values.to(torch.bfloat16)
    return spread


def planted_counts(base: dict[str, torch.Tensor], seed: int = 0) -> Masks:
    """Per entry the number of runs that change it: a fifth of the entries, all among the smaller
    half of the weights, are changed by all three runs; others by two, one or none."""
    rng = np.random.default_rng(seed)
    counts: Masks = {}
    for name, t in base.items():
        values = t.float().numpy().reshape(-1)
        n = values.size
        order = np.argsort(np.abs(values), kind="stable")
        c = np.zeros(n, dtype=np.int64)
        core = rng.choice(order[: n // 2], size=n // 5, replace=False)
        rest = rng.permutation(np.setdiff1d(order, core))
        c[core] = 3
        c[rest[: n // 6]] = 2
        c[rest[n // 6 : n // 6 + n // 4]] = 1
        counts[name] = c.reshape(t.shape)
    return counts


def masks_of(counts: Masks, seed: int = 1) -> list[Masks]:
    """Three masks realising ``counts``: an entry with count c is in c runs chosen at random."""
    rng = np.random.default_rng(seed)
    masks: list[Masks] = [{} for _ in range(RUNS)]
    for name, c in counts.items():
        flat = c.reshape(-1)
        member = np.zeros((RUNS, flat.size), dtype=bool)
        for i, k in enumerate(flat):
            member[rng.choice(RUNS, size=int(k), replace=False), i] = True
        for j in range(RUNS):
            masks[j][name] = member[j].reshape(c.shape)
    return masks


class Planted:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = planted_base()
        self.counts = planted_counts(self.base)
        self.masks = masks_of(self.counts)
        moved, _ = plant_changes(self.base, 1.0, seed=9)  # every entry moved by more than 1e-5
        write_checkpoint(root / "base", self.base)
        for j, masks in enumerate(self.masks):
            tuned = {n: torch.where(torch.from_numpy(masks[n]), moved[n], t) for n, t in self.base.items()}
            write_checkpoint(root / f"run{j}", tuned)

    def spec(self, checks: str, name: str) -> Path:
        path = self.root / f"{name}.sparsecheck.yaml"
        keys = ", ".join(f"run{j}: run{j}" for j in range(RUNS))
        path.write_text(f"version: 1\ncheckpoints: {{base: base, {keys}}}\nchecks:\n" + checks)
        return path


def null_reference(observed: list[int], strata: list[tuple[int, list[int]]], suffix: str) -> dict[str, Any]:
    """METRICS.md's null spelled out in exact arithmetic over (t_b, [a_b1 … a_bN]) strata."""
    n, runs = sum(observed), len(strata[0][1])
    expected = [
        sum((t * poisson_binomial([Fraction(a, t) for a in sizes], k) for t, sizes in strata), Fraction(0))
        for k in range(runs + 1)
    ]
    mean = sum((t * math.prod(Fraction(a, t) for a in sizes) for t, sizes in strata), Fraction(0))
    variance = sum(
        (
            t * math.prod(Fraction(a, t) for a in sizes)
            + (t * (t - 1) * math.prod(Fraction(a * (a - 1), t * (t - 1)) for a in sizes) if t > 1 else 0)
            - (t * math.prod(Fraction(a, t) for a in sizes)) ** 2
            for t, sizes in strata
        ),
        Fraction(0),
    )
    fields: dict[str, Any] = {f"expected_k{k}{suffix}": float(expected[k] / n) for k in range(runs + 1)}
    fields[f"expected_all{suffix}"] = float(mean / n)
    fields[f"lift_all{suffix}"] = observed[runs] / float(mean)
    fields[f"z_score{suffix}"] = (observed[runs] - float(mean)) / math.sqrt(float(variance))
    fields[f"tv_distance{suffix}"] = float(
        sum(abs(o - e) for o, e in zip(observed, expected, strict=True)) / (2 * n)
    )
    return fields


def reference_fields(planted: Planted, names: list[str], matched: bool = True) -> dict[str, Any]:
    """Every field of ``names`` taken together, from the planted counts and masks."""
    c = np.concatenate([planted.counts[n].reshape(-1) for n in names])
    masks = [np.concatenate([m[n].reshape(-1) for n in names]) for m in planted.masks]
    n = c.size
    observed = [int((c == k).sum()) for k in range(RUNS + 1)]
    fields: dict[str, Any] = {
        "runs": RUNS,
        "compared": n,
        "changed_all": observed[RUNS],
        "changed_any": n - observed[0],
        "all_fraction": observed[RUNS] / n,
        "any_fraction": (n - observed[0]) / n,
        "core_share": observed[RUNS] / (n - observed[0]),
        "mean_density": float(c.sum()) / (RUNS * n),
        **{f"share_k{k}": observed[k] / n for k in range(RUNS + 1)},
    }
    fields.update(null_reference(observed, [(n, [int(m.sum()) for m in masks])], ""))
    if matched:
        values = np.concatenate([planted.base[n].float().numpy().reshape(-1) for n in names])
        stratum = np.where(values == 0, -1000, np.frexp(np.abs(values))[1])
        strata = [
            (int((stratum == s).sum()), [int(m[stratum == s].sum()) for m in masks])
            for s in np.unique(stratum)
        ]
        fields.update(null_reference(observed, strata, "_matched"))
    return fields


def assert_fields(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if isinstance(value, int):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key


def only_result(spec: Path) -> MetricResult:
    (outcome,) = run_spec(spec).outcomes
    assert outcome.status == Status.PASS, outcome.message
    assert outcome.result is not None
    return outcome.result


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    return Planted(tmp_path_factory.mktemp("planted"))


RUN_ARGS = "{base: base, runs: [run0, run1, run2], policy: exact}"


@pytest.fixture(scope="module")
def from_runs(planted: Planted) -> MetricResult:
    spec = planted.spec(
        f"  - id: runs\n    metric: mask_agreement\n    args: {RUN_ARGS}\n"
        "    expect: [{field: all_fraction, gt: {field: expected_all}}, {gt: 2}]\n",
        name="runs",
    )
    return only_result(spec)


def test_counts_their_null_and_the_all_runs_test_match_planted_truth(
    planted: Planted, from_runs: MetricResult
) -> None:
    want = reference_fields(planted, list(planted.base))
    assert_fields(dict(from_runs.fields), want)
    assert from_runs.value == pytest.approx(want["lift_all"])
    # The planted core lies among small weights: matched chance is above uniform, its lift lower.
    assert want["expected_all_matched"] > 1.2 * want["expected_all"]
    fields = from_runs.fields
    assert fields["log10_p"] < fields["log10_p_matched"] < -10  # type: ignore[operator]
    assert from_runs.series["runs_changed"] == [0, 1, 2, 3]
    assert from_runs.series["observed"] == [fields[f"share_k{k}"] for k in range(4)]
    assert from_runs.series["expected_matched"] == [fields[f"expected_k{k}_matched"] for k in range(4)]


def test_each_layer_module_and_tensor_has_its_own_null(planted: Planted, from_runs: MetricResult) -> None:
    names = list(planted.base)
    layer1 = [n for n in names if n.startswith("model.layers.1.")]
    others = [n for n in names if not n.startswith("model.layers.")]
    q_proj = [n for n in names if n.endswith("self_attn.q_proj.weight")]
    groups = from_runs.groups
    assert_fields(dict(groups["layer"]["model.layers.1"]), reference_fields(planted, layer1))
    assert_fields(dict(groups["layer"]["other"]), reference_fields(planted, others))
    assert_fields(
        dict(groups["module"]["model.layers.*.self_attn.q_proj.weight"]), reference_fields(planted, q_proj)
    )
    assert_fields(dict(groups["tensor"]["lm_head.weight"]), reference_fields(planted, ["lm_head.weight"]))
    assert groups["layer"]["model.layers.1"]["tensors"] == len(layer1)
    assert set(groups["tensor"]) == set(names)


@pytest.fixture(scope="module")
def mask_files(planted: Planted) -> list[str]:
    folder = planted.root / "masks"
    folder.mkdir()
    for j, masks in enumerate(planted.masks):  # the planted masks themselves, as mask files
        with MaskWriter(folder / f"m{j}.safetensors", {"policy": "exact", "tol": "0.0"}) as writer:
            for name, mask in masks.items():
                writer.add(name, mask)
    return [f"masks/m{j}.safetensors" for j in range(RUNS)]


def test_mask_files_give_the_same_counts_and_with_base_the_same_matched_null(
    planted: Planted, from_runs: MetricResult, mask_files: list[str]
) -> None:
    listed = ", ".join(mask_files)
    alone = only_result(
        planted.spec(f"  - {{id: files, metric: mask_agreement, args: {{masks: [{listed}]}}}}\n", "files")
    )
    unmatched = reference_fields(planted, list(planted.base), matched=False)
    assert_fields(dict(alone.fields), unmatched)
    assert alone.fields["lift_all_matched"] is None and alone.fields["expected_k3_matched"] is None
    assert any("no base given" in note for note in alone.notes)
    assert alone.fields["masks"] == "mask files" and alone.fields["policy"] == "exact"
    with_base = only_result(
        planted.spec(
            f"  - {{id: both, metric: mask_agreement, args: {{base: base, masks: [{listed}]}}}}\n", "both"
        )
    )
    for granularity, groups in from_runs.groups.items():
        for key, fields in groups.items():
            assert_fields(dict(with_base.groups[granularity][key]), dict(fields))
            assert_fields(dict(alone.groups[granularity][key]), {k: fields[k] for k in unmatched})


def test_independent_random_runs_agree_at_chance(tmp_path: Path) -> None:
    base = planted_base()
    moved, _ = plant_changes(base, 1.0, seed=9)
    write_checkpoint(tmp_path / "base", base)
    rng = np.random.default_rng(4)
    for j, density in enumerate((0.3, 0.5, 0.6)):
        tuned = {
            n: torch.where(torch.from_numpy(rng.random(t.shape) < density), moved[n], t)
            for n, t in base.items()
        }
        write_checkpoint(tmp_path / f"run{j}", tuned)
    spec = tmp_path / "null.sparsecheck.yaml"
    spec.write_text(
        "version: 1\ncheckpoints: {base: base, run0: run0, run1: run1, run2: run2}\n"
        f"checks:\n  - {{id: chance, metric: mask_agreement, args: {RUN_ARGS}}}\n"
    )
    fields = only_result(spec).fields
    assert fields["lift_all"] == pytest.approx(1.0, abs=0.1)
    assert abs(fields["z_score_matched"]) < 4  # type: ignore[arg-type]
    assert fields["log10_p"] > -3  # type: ignore[operator]
    assert fields["tv_distance"] < 3 * math.sqrt(RUNS / fields["compared"])  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ("runs: [run0, run1]", "runs need base"),
        ("base: base, runs: [run0]", "1 run given, need at least 2"),
        ("base: base", "no runs and no masks given"),
        ("base: base, runs: [run0, run1], masks: [x.safetensors]", "not both"),
    ],
)
def test_argument_combinations_that_make_no_sense_are_errors(
    planted: Planted, args: str, problem: str
) -> None:
    spec = planted.spec(f"  - {{id: bad, metric: mask_agreement, args: {{{args}}}}}\n", name="bad")
    (outcome,) = run_spec(spec).outcomes
    assert outcome.status == Status.ERROR
    assert problem in outcome.message
