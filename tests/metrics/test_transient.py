"""transient_updates and update_categories on a planted run where chosen entries move and come back.

The run's checkpoints are built from planted masks C_1 … C_T (entries of C_t differ from the
base at checkpoint t, every other entry is bitwise the base), so M = C_T and every expected
count is taken from the masks with torch.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from sparsecheck import CheckOutcome, MetricResult, Status
from sparsecheck.checkpoints._runs import run_checkpoints
from sparsecheck.errors import CheckpointError
from sparsecheck.metrics.transient import run_steps
from sparsecheck.testing import run_checks, tiny_llama_state_dict, write_checkpoint

State = dict[str, torch.Tensor]
STEPS = (5, 20, 100)


def planted_run(base: State, steps: int, seed: int = 0) -> list[State]:
    """Masks C_1 … C_T per tensor; C_T is the final subnetwork, the earlier ones overlap it."""
    generator = torch.Generator().manual_seed(seed)
    final = {name: torch.rand(t.shape, generator=generator) < 0.3 for name, t in base.items()}
    masks = []
    for t in range(steps - 1):
        share_kept = 0.4 + 0.2 * t
        masks.append(
            {
                name: (final[name] & (torch.rand(m.shape, generator=generator) < share_kept))
                | (torch.rand(m.shape, generator=generator) < 0.1 * (t + 1))
                for name, m in final.items()
            }
        )
    return [*masks, final]


def moved(base: State, mask: State, t: int) -> State:
    """``base`` with the entries of ``mask`` moved well beyond any tolerance (in a way that depends on t)."""
    out = {}
    for name, tensor in base.items():
        wide = tensor.float()
        out[name] = torch.where(mask[name], wide + 0.05 * (t + 1) * (wide.abs() + 1), wide).to(tensor.dtype)
    return out


def results(outcomes: dict[str, CheckOutcome]) -> dict[str, MetricResult]:
    for outcome in outcomes.values():
        assert outcome.status is not Status.ERROR, outcome.message
    return {key: o.result for key, o in outcomes.items() if o.result is not None}


def layer(name: str) -> str:
    match = re.match(r"(model\.layers\.\d+)\.", name)
    return match.group(1) if match else "other"


def categories(masks: list[State], names: list[str]) -> dict[str, float]:
    final = torch.cat([masks[-1][n].reshape(-1) for n in names])
    ever = torch.zeros_like(final)
    for mask in masks:
        ever |= torch.cat([mask[n].reshape(-1) for n in names])
    n = final.numel()
    return {
        "consistent": int(final.sum()) / n,
        "transient": int((ever & ~final).sum()) / n,
        "untouched": int((~ever).sum()) / n,
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path], State, list[State]]:
    root = tmp_path_factory.mktemp("run")
    base = tiny_llama_state_dict(layers=2, dtype=torch.bfloat16)
    masks = planted_run(base, len(STEPS))
    paths = {"base": write_checkpoint(root / "base", base)}
    for t, (step, mask) in enumerate(zip(STEPS, masks, strict=True)):
        paths[f"c{step}"] = write_checkpoint(root / "output" / f"checkpoint-{step}", moved(base, mask, t))
    return root, paths, base, masks


def test_categories_exactly_on_planted_run(trained: tuple[Path, dict[str, Path], State, list[State]]) -> None:
    root, paths, base, masks = trained
    run = [f"c{step}" for step in STEPS]
    args = {"base": "base", "run": run, "policy": "exact"}
    result = results(
        run_checks(
            root,
            paths,
            [
                {"id": "cat", "metric": "update_categories", "args": args},
                {"id": "cat-atol", "metric": "update_categories", "args": {**args, "policy": "atol"}},
            ],
        )
    )
    names = list(base)
    want = categories(masks, names)
    for key in ("cat", "cat-atol"):
        got = result[key]
        assert got.value_field == "transient"
        for category, fraction in want.items():
            assert got.fields[category] == pytest.approx(fraction, abs=1e-15), category
        fractions = [got.fields[c] for c in ("consistent", "transient", "untouched")]
        assert all(isinstance(f, float) for f in fractions)
        assert sum(fractions) == pytest.approx(1.0, abs=1e-12)  # type: ignore[arg-type]
        assert got.fields["checkpoints"] == len(STEPS) and got.fields["observed_at"] == "checkpoints"
        assert got.fields["compared"] == sum(t.numel() for t in base.values())
    assert 0 < want["transient"] < 1 and 0 < want["untouched"] < 1
    by_layer = result["cat"].groups["layer"]
    layers = sorted({layer(n) for n in names})
    assert sorted(by_layer) == layers
    for key in layers:
        expected = categories(masks, [n for n in names if layer(n) == key])
        for category, fraction in expected.items():
            assert by_layer[key][category] == pytest.approx(fraction, abs=1e-15)
    module = "model.layers.*.mlp.up_proj.weight"
    expected = categories(masks, [n for n in names if n.endswith("mlp.up_proj.weight")])
    assert result["cat"].groups["module"][module]["transient"] == pytest.approx(
        expected["transient"], abs=1e-15
    )


def test_transient_share_curve_exact(trained: tuple[Path, dict[str, Path], State, list[State]]) -> None:
    root, paths, base, masks = trained
    run = [f"c{step}" for step in STEPS]
    result = results(
        run_checks(
            root,
            paths,
            [{"id": "tr", "metric": "transient_updates", "args": {"base": "base", "run": run}}],
        )
    )["tr"]
    names = list(base)
    n = sum(t.numel() for t in base.values())
    final = torch.cat([masks[-1][name].reshape(-1) for name in names])
    shares, fractions, changed = [], [], []
    for mask in masks:
        c_t = torch.cat([mask[name].reshape(-1) for name in names])
        transient = int((c_t & ~final).sum())
        shares.append(transient / int(c_t.sum()))
        fractions.append(transient / n)
        changed.append(int(c_t.sum()) / n)
    assert result.series["step"] == list(STEPS)
    assert result.series["transient_share"] == pytest.approx(shares, abs=1e-15)
    assert result.series["transient_fraction"] == pytest.approx(fractions, abs=1e-15)
    assert result.series["changed_fraction"] == pytest.approx(changed, abs=1e-15)
    assert shares[-1] == 0 and max(shares) > 0.1
    assert result.value == pytest.approx(max(shares), abs=1e-15)
    assert result.fields["transient_share_mean"] == pytest.approx(sum(shares) / len(shares), abs=1e-15)
    assert result.fields["peak_step"] == STEPS[shares.index(max(shares))]
    assert set(result.groups) == {"tensor", "layer", "module"}
    name = "model.layers.1.self_attn.q_proj.weight"
    m = masks[-1][name]
    shares_of_name = [int((mask[name] & ~m).sum()) / int(mask[name].sum()) for mask in masks]
    assert result.groups["tensor"][name]["transient_share_max"] == pytest.approx(
        max(shares_of_name), abs=1e-15
    )


def test_steps_fall_back_to_positions(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(layers=1, hidden=8, intermediate=8, vocab=16)
    masks = planted_run(base, 2, seed=1)
    paths = {"base": write_checkpoint(tmp_path / "base", base)}
    for t, name in enumerate(("early", "late")):
        paths[name] = write_checkpoint(tmp_path / name, moved(base, masks[t], t))
    result = results(
        run_checks(
            tmp_path,
            paths,
            [{"id": "tr", "metric": "transient_updates", "args": {"base": "base", "run": ["early", "late"]}}],
        )
    )["tr"]
    assert result.series["step"] == [1, 2]
    assert result.value == max(result.series["transient_share"])  # type: ignore[type-var]


def test_run_steps_parse_checkpoint_names() -> None:
    assert run_steps(["/x/out/checkpoint-10", "/x/out/checkpoint-200"]) == [10, 200]
    assert run_steps(["/x/out/checkpoint-10", "/x/final"]) == [1, 2]
    assert run_steps(["org/model@checkpoint-3"]) == [1]


def test_run_checkpoints_orders_by_step(tmp_path: Path) -> None:
    for step in (100, 5, 20):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint folder")
    (tmp_path / "runs").mkdir()
    (tmp_path / "checkpoint-best").mkdir()
    assert run_checkpoints(tmp_path) == [(s, tmp_path / f"checkpoint-{s}") for s in (5, 20, 100)]


def test_run_checkpoints_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint-<step> subfolders"):
        run_checkpoints(tmp_path)
    with pytest.raises(CheckpointError, match="not a folder"):
        run_checkpoints(tmp_path / "missing")
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-05").mkdir()
    with pytest.raises(CheckpointError, match="both step 5"):
        run_checkpoints(tmp_path)
