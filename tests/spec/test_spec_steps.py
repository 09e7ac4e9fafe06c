"""The ``steps:`` section: parsing, linking, the keys steps produce, and errors at file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_support import HEADER, load, load_error, where

from sparsecheck.spec._steps import generated_dataset
from sparsecheck.training._api import GeneratedDataset

SPEC = "spec.sparsecheck.yaml"

PIPELINE = (
    HEADER
    + """\
vars: {seed: 7}
steps:
  - id: sub                        # listed first: order follows the references
    train:
      backend: fake
      algorithm: dpo
      base: sft
      mask: full-mask
      data: {builtin: arithmetic, size: 8}
      hyperparameters: {lr: 1.0e-5, steps: 4, seed: "${seed}"}
  - id: full-mask
    mask: {base: sft, tuned: full, policy: atol, tol: 1.0e-6, exclude: ["*norm*"]}
  - id: full
    train:
      backend: fake
      algorithm: dpo
      base: sft
      data: {builtin: arithmetic, size: 8, seed: 3}
      hyperparameters: {lr: 1.0e-5, steps: 4}
      snapshots: {every: 2}
  - id: from-file
    train: {backend: fake, algorithm: sft, base: full, mask: masks/m.safetensors, data: {}}
checks:
  - id: reads-steps
    metric: kinds_probe
    args: {ckpt: sub, run: [full.run], mask: full-mask}
  - id: a-train-step-as-checkpoint
    metric: update_sparsity
    args: {base: sft, tuned: full}
"""
)


def test_steps_link_their_inputs_and_produce_keys(tmp_path: Path) -> None:
    spec = load(tmp_path, PIPELINE)
    steps = {step.id: step for step in spec.steps}
    assert [step.id for step in spec.steps] == ["sub", "full-mask", "full", "from-file"]
    sub, mask, full, from_file = steps["sub"], steps["full-mask"], steps["full"], steps["from-file"]

    # the keys each step produces, with their kinds, linked back to the step
    produced = {key: (ref.kind, ref.step.id) for key, ref in spec.checkpoints.items() if ref.step}
    assert produced == {
        "sub": ("checkpoint", "sub"),
        "full-mask": ("mask", "full-mask"),
        "full": ("checkpoint", "full"),
        "full.run": ("run", "full"),
        "from-file": ("checkpoint", "from-file"),
    }
    assert all(spec.checkpoints[key].step is None for key in ("sft", "rl_a", "rl_b"))

    # inputs are refs: a checkpoints entry, or a ref carrying the step that makes it
    assert sub.inputs["base"] is spec.checkpoints["sft"]
    assert sub.inputs["mask"].step == mask and sub.inputs["mask"].kind == "mask"
    assert mask.inputs["tuned"].step == full and mask.inputs["base"].source == "ckpts/sft"
    assert from_file.inputs["base"].step == full

    # a mask named by path is a file input, made absolute against the spec's folder
    expected_file = (tmp_path / "masks" / "m.safetensors").resolve()
    assert dict(from_file.files) == {"mask": expected_file} and "mask" not in from_file.inputs
    assert from_file.settings["mask"] == str(expected_file)

    # settings are plain data with variables substituted
    assert sub.settings["hyperparameters"] == {"lr": 1e-5, "steps": 4, "seed": 7}
    assert type(sub.settings["hyperparameters"]) is dict
    assert mask.settings["exclude"] == ["*norm*"] and mask.settings["tol"] == 1e-6
    assert full.settings["snapshots"] == {"every": 2}
    assert full.nodeid == f"{(tmp_path / SPEC).as_posix()}::full"

    checks = {check.id: check for check in spec.checks}
    assert checks["reads-steps"].args["ckpt"] == "sub"
    assert checks["reads-steps"].args["run"] == ["full.run"]
    assert checks["reads-steps"].args["mask"] == "full-mask"


def test_step_location_is_its_mapping(tmp_path: Path) -> None:
    spec = load(tmp_path, PIPELINE)
    full = next(step for step in spec.steps if step.id == "full")
    assert str(full.location) == where(tmp_path / SPEC, PIPELINE, "id: full\n")


def test_data_is_a_generated_dataset() -> None:
    assert generated_dataset({"builtin": "arithmetic", "size": 8, "temperature": 1}) == GeneratedDataset(
        name="arithmetic", size=8, temperature=1
    )
    assert generated_dataset({}) == GeneratedDataset()


ONE_CHECK = "  - {id: c, metric: update_sparsity, args: {base: sft, tuned: rl_a}}\n"


def _step_text(*steps: str, checks: str = ONE_CHECK) -> str:
    return HEADER + "steps:\n" + "".join(f"  - {step}\n" for step in steps) + "checks:\n" + checks


TRAIN = "backend: fake, algorithm: dpo, data: {}"

ERRORS = [
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: sfft}}}}"],
        "sfft",
        "step 'a': train.base: unknown checkpoint or step 'sfft' (did you mean 'sft'?)",
        id="unknown-reference",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: b}}}}", f"{{id: b, train: {{{TRAIN}, base: a}}}}"],
        "a}",
        "steps form a cycle: a → b → a",
        id="cycle",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: a}}}}"],
        "a}",
        "steps form a cycle: a → a",
        id="self-reference",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: sft}}}}", f"{{id: a, train: {{{TRAIN}, base: sft}}}}"],
        "a,",
        "duplicate step id 'a' (first at line 7)",
        id="duplicate-id",
    ),
    pytest.param(
        [f"{{id: rl_a, train: {{{TRAIN}, base: sft}}}}"],
        "rl_a,",
        "step id 'rl_a': 'rl_a' is already a key of the checkpoints table (line 4)",
        id="id-is-a-checkpoint-key",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: sft, mask: rl_a}}}}"],
        "rl_a}",
        "step 'a': train.mask: 'rl_a' is a checkpoint (a checkpoints entry); "
        "expected a mask step's id or a mask file path",
        id="checkpoint-as-mask",
    ),
    pytest.param(
        ["{id: m, mask: {base: sft, tuned: rl_a}}", f"{{id: a, train: {{{TRAIN}, base: m}}}}"],
        "m}",
        "step 'a': train.base: 'm' is a mask (produced by step 'm'); "
        "expected a checkpoints key or a train step's id",
        id="mask-as-base",
    ),
    pytest.param(
        [
            f"{{id: a, train: {{{TRAIN}, base: sft, snapshots: {{every: 2}}}}}}",
            "{id: m, mask: {base: sft, tuned: a.run}}",
        ],
        "a.run",
        "step 'm': mask.tuned: 'a.run' is a run folder of snapshots (produced by step 'a'); "
        "expected a checkpoints key or a train step's id",
        id="run-as-checkpoint",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: sft}}, mask: {{base: sft, tuned: rl_a}}}}"],
        "{id: a",
        "steps[0]: a step needs exactly one of train, mask",
        id="two-actions",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: sft, hyperparams: {{}}}}}}"],
        "hyperparams",
        "unknown key 'hyperparams' (did you mean 'hyperparameters'?)",
        id="unknown-train-key",
    ),
    pytest.param(
        ["{id: a, train: {backend: fake, algorithm: dpo, base: sft}}"],
        "{backend",
        "steps[0].train: missing required key 'data'",
        id="missing-data",
    ),
    pytest.param(
        [f"{{id: a.b, train: {{{TRAIN}, base: sft}}}}"],
        "a.b",
        "steps[0].id: 'a.b' is not a step id (letters, digits, _ and -, starting with a letter or _)",
        id="dot-in-id",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: sft, snapshots: {{every: 0}}}}}}"],
        "0}",
        "steps[0].train.snapshots.every: expected a whole number of steps >= 1, got 0",
        id="snapshots-every-zero",
    ),
    pytest.param(
        ["{id: a, train: {backend: fake, algorithm: dpo, base: sft, data: {sise: 3}}}"],
        "{sise",
        "step 'a': train.data: unknown key 'sise' (did you mean 'size'?)",
        id="unknown-data-key",
    ),
    pytest.param(
        ["{id: a, train: {backend: fake, algorithm: dpo, base: sft, data: {size: many}}}"],
        "{size",
        "step 'a': train.data: size: expected an integer, got 'many'",
        id="data-type",
    ),
    pytest.param(
        [f"{{id: a, train: {{{TRAIN}, base: sft, hyperparameters: {{seed: 1.5}}}}}}"],
        "{seed",
        "step 'a': train.hyperparameters: seed: expected an integer, got 1.5",
        id="seed-type",
    ),
    pytest.param(
        ["{id: m, mask: {base: sft, tuned: rl_a, policy: exakt}}"],
        "exakt",
        "step 'm': mask.policy: 'exakt' is not one of exact, atol, rtol (did you mean 'exact'?)",
        id="mask-policy",
    ),
    pytest.param(
        ["{id: m, mask: {base: sft, tuned: rl_a, tol: -1}}"],
        "-1",
        "step 'm': mask.tol: expected a number >= 0, got -1",
        id="mask-tol",
    ),
]


@pytest.mark.parametrize(("steps", "needle", "message"), ERRORS)
def test_step_errors_point_at_the_culprit(
    tmp_path: Path, steps: list[str], needle: str, message: str
) -> None:
    text = _step_text(*steps)
    steps_part = text[: text.index("checks:")]
    spot = where(tmp_path / SPEC, text, needle, steps_part.count(needle) - 1)  # its last place in steps
    assert load_error(tmp_path, text) == f"{spot}: {message}"


def test_a_run_key_clashing_with_a_checkpoint_key_is_an_error(tmp_path: Path) -> None:
    text = HEADER.replace("  rl_b:", "  a.run: ckpts/x\n  rl_b:") + (
        f"steps:\n  - {{id: a, train: {{{TRAIN}, base: sft, snapshots: {{every: 1}}}}}}\n"
        "checks:\n  - {id: c, metric: update_sparsity, args: {base: sft, tuned: rl_a}}\n"
    )
    spot = where(tmp_path / SPEC, text, "a,")
    assert load_error(tmp_path, text) == (
        f"{spot}: step id 'a': 'a.run' is already a key of the checkpoints table (line 5)"
    )


CHECK_ERRORS = [
    pytest.param(
        "{ckpt: m}",
        "m}",
        "args.ckpt: 'm' is a mask (produced by step 'm'), not what 'kinds_probe' reads here",
        id="mask-as-checkpoint",
    ),
    pytest.param(
        "{ckpt: a.run}",
        "a.run",
        "args.ckpt: 'a.run' is a run folder of snapshots (produced by step 'a'), not what 'kinds_probe' "
        "reads here; use it in a run list, e.g. [a.run]",
        id="run-as-checkpoint",
    ),
    pytest.param(
        "{run: [sft, m]}",
        "[sft",
        "args.run: 'm' is a mask (produced by step 'm'), not what 'kinds_probe' reads here",
        id="mask-in-run-list",
    ),
    pytest.param(
        "{mask: a.run}",
        "a.run",
        "args.mask: 'a.run' is a run folder of snapshots (produced by step 'a'), not what 'kinds_probe' "
        "reads here; use it in a run list, e.g. [a.run]",
        id="run-as-mask",
    ),
]


@pytest.mark.parametrize(("args", "needle", "message"), CHECK_ERRORS)
def test_checks_read_step_keys_of_the_right_kind(
    tmp_path: Path, args: str, needle: str, message: str
) -> None:
    text = _step_text(
        f"{{id: a, train: {{{TRAIN}, base: sft, snapshots: {{every: 1}}}}}}",
        "{id: m, mask: {base: sft, tuned: a}}",
        checks=f"  - {{id: c, metric: kinds_probe, args: {args}}}\n",
    )
    spot = where(tmp_path / SPEC, text, needle, text.count(needle) - 1)
    assert load_error(tmp_path, text) == f"{spot}: {message}"


def test_checks_may_read_a_train_step_where_a_checkpoint_or_mask_is_wanted(tmp_path: Path) -> None:
    text = _step_text(
        f"{{id: a, train: {{{TRAIN}, base: sft, snapshots: {{every: 1}}}}}}",
        checks="  - {id: c, metric: kinds_probe, args: {ckpt: a, run: [sft, a, a.run], mask: a}}\n",
    )
    (check,) = load(tmp_path, text).checks
    assert (check.args["ckpt"], check.args["run"], check.args["mask"]) == ("a", ["sft", "a", "a.run"], "a")


def test_a_spec_without_steps_has_none(tmp_path: Path) -> None:
    spec = load(tmp_path, HEADER + "checks:\n" + ONE_CHECK)
    assert spec.steps == []
    assert all(ref.step is None and ref.kind == "checkpoint" for ref in spec.checkpoints.values())
