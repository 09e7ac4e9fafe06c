"""Spec steps end to end with a fake training backend: order, reuse, recompute, masks, failures.

The fake backend "trains" by planting seeded changes in its base (``plant_changes``), so every
output is known exactly; with a mask it keeps the masked-out entries at the base.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sparsecheck import hookimpl
from sparsecheck.engine._outcome import Status
from sparsecheck.engine._workdir import WorkFolder
from sparsecheck.exitcodes import ExitCode
from sparsecheck.metrics._maskfile import MaskFile
from sparsecheck.testing import plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint
from sparsecheck.training._api import TrainingBackend, TrainRequest, TrainResult


class FakeBackend(TrainingBackend):
    """Plants ``fraction`` of changes (seeded by the run's seed), inside the mask when given."""

    name = "fake"
    algorithms = ("dpo", "sft")

    def __init__(self) -> None:
        self.requests: list[TrainRequest] = []

    @property
    def trained(self) -> list[str]:
        """The output folder names' step ids, in call order (``full``, ``sub``, …)."""
        return [request.output.parent.name.lstrip(".").split("-")[0] for request in self.requests]

    def train(self, request: TrainRequest) -> TrainResult:
        self.requests.append(request)
        settings = request.hyperparameters
        if settings.get("fail"):
            raise RuntimeError("boom")
        base = load_file(str(request.base / "model.safetensors"))
        tuned, _ = plant_changes(base, settings.get("fraction", 0.3), seed=request.seed)
        if request.mask is not None:
            with MaskFile.open(request.mask) as masks:
                tuned = {
                    name: torch.where(torch.from_numpy(masks.read(name).copy()), value, base[name])
                    for name, value in tuned.items()
                }
        steps = settings.get("steps", 4)
        snapshots = []
        if request.snapshots.full:
            # in a folder of their own, or beside the final weights (then gathered into run/)
            where = (
                request.output if settings.get("snapshots_beside_model") else request.output.parent / "snaps"
            )
            for step in range(request.snapshots.every, steps + 1, request.snapshots.every):
                state = tuned if step == steps else plant_changes(base, 0.5, seed=100 + step)[0]
                snapshots.append(write_checkpoint(where / f"checkpoint-{step}", state))
        write_checkpoint(request.output, tuned)
        log = [{"step": step, "loss": 1.0 / step, "note": "text"} for step in range(1, steps + 1)]
        return TrainResult(request.output, snapshots, log, mask_violations=0 if request.mask else None)


class FakeBackendPlugin:
    __name__ = "fake-backend"

    def __init__(self) -> None:
        self.backend = FakeBackend()

    @hookimpl
    def sparsecheck_add_backends(self) -> list[TrainingBackend]:
        return [self.backend]


FULL_FRACTION, SUB_FRACTION = 0.3, 0.5
SPEC = f"""\
version: 1
checkpoints: {{base: ckpts/base, other: ckpts/other}}
steps:
  - id: sub                  # listed before what it reads
    train: {{backend: fake, algorithm: dpo, base: base, mask: full-mask, data: {{size: 8}},
            hyperparameters: {{fraction: {SUB_FRACTION}, seed: 2}}}}
  - id: sub-mask
    mask: {{base: base, tuned: sub}}
  - id: full-mask
    mask: {{base: base, tuned: full, policy: exact}}
  - id: full
    train: {{backend: fake, algorithm: dpo, base: base, data: {{size: 8}},
            hyperparameters: {{fraction: {FULL_FRACTION}, seed: 1}}}}
checks:
  - id: full-sparsity
    metric: update_sparsity
    args: {{base: base, tuned: full, policy: exact}}
  - id: sub-inside-full
    metric: mask_overlap
    args: {{mask_a: full-mask, mask_b: sub-mask}}
    expect: {{field: o2, eq: 1.0}}
  - id: independent
    metric: update_sparsity
    args: {{base: base, tuned: other, policy: exact}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A spec folder with a base checkpoint and an unrelated tuned one."""
    base = tiny_llama_state_dict(dtype=torch.float32)
    write_checkpoint(tmp_path / "ckpts" / "base", base)
    write_checkpoint(tmp_path / "ckpts" / "other", plant_changes(base, 0.1, seed=9)[0])
    (tmp_path / "steps.sparsecheck.yaml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def _run(project: Path, plugin: FakeBackendPlugin, **options: Any) -> Any:
    return run_spec(project / "steps.sparsecheck.yaml", plugins=[plugin], options=options)


def _outcomes(session: Any) -> dict[str, Any]:
    return {outcome.check.id: outcome for outcome in session.outcomes}


def _statuses(session: Any) -> dict[str, str]:
    return {record.step.id: record.status for record in session.steps.values()}


def _base(project: Path) -> dict[str, torch.Tensor]:
    """The base as the backend loads it (plant_changes draws per tensor in this order)."""
    return load_file(str(project / "ckpts" / "base" / "model.safetensors"))


def test_steps_run_in_dependency_order_and_checks_read_their_outputs(project: Path) -> None:
    plugin = FakeBackendPlugin()
    session = _run(project, plugin)
    assert plugin.backend.trained == ["full", "sub"]
    assert list(_statuses(session).items()) == [
        ("full", "ran"),
        ("full-mask", "ran"),
        ("sub", "ran"),
        ("sub-mask", "ran"),
    ]
    full_masks = plant_changes(_base(project), FULL_FRACTION, seed=1)[1]
    sub_masks = {
        n: m & full_masks[n] for n, m in plant_changes(_base(project), SUB_FRACTION, seed=2)[1].items()
    }

    # the mask step wrote exactly the planted changes of the full run, and sub trained under it
    records = {record.step.id: record for record in session.steps.values()}
    mask_path = records["full-mask"].outputs["full-mask"]
    assert plugin.backend.requests[1].mask == mask_path
    with MaskFile.open(mask_path) as mask_file:
        assert sorted(mask_file.names()) == sorted(full_masks)
        for name, truth in full_masks.items():
            np.testing.assert_array_equal(mask_file.read(name), truth.numpy())
        assert mask_file.policy.name == "exact"

    outcomes = _outcomes(session)
    assert {o.status for o in outcomes.values()} == {Status.PASS}
    changed = sum(int(m.sum()) for m in full_masks.values())
    total = sum(m.numel() for m in full_masks.values())
    assert outcomes["full-sparsity"].result.fields["sparsity"] == pytest.approx(1 - changed / total)
    overlap = outcomes["sub-inside-full"].result.fields
    assert overlap["o2"] == 1.0
    assert overlap["o1"] == pytest.approx(sum(int(m.sum()) for m in sub_masks.values()) / changed)
    assert session.exitstatus == ExitCode.OK


def test_outputs_are_reused_while_nothing_changed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = FakeBackendPlugin()
    first = _run(project, plugin)
    assert "step full: trained dpo (fake) in " in capsys.readouterr().out
    second = _run(project, plugin, no_cache=True)
    assert len(plugin.backend.requests) == 2  # nothing trained again
    assert set(_statuses(second).values()) == {"reused"}
    assert f"step full: reused {project / '.sparsecheck_cache' / 'work'}" in capsys.readouterr().out
    assert [s.outputs for s in first.steps.values()] == [s.outputs for s in second.steps.values()]
    assert (
        _outcomes(second)["sub-inside-full"].result.fields
        == _outcomes(first)["sub-inside-full"].result.fields
    )


def test_a_changed_input_or_setting_recomputes_what_depends_on_it(project: Path) -> None:
    plugin = FakeBackendPlugin()
    first = _run(project, plugin)
    # a new sub seed: sub and its mask again, the full run and its mask reused
    spec = project / "steps.sparsecheck.yaml"
    spec.write_text(SPEC.replace("seed: 2", "seed: 3"), encoding="utf-8")
    second = _run(project, plugin)
    assert plugin.backend.trained == ["full", "sub", "sub"]
    assert _statuses(second) == {"full": "reused", "full-mask": "reused", "sub": "ran", "sub-mask": "ran"}
    # a changed base checkpoint: everything again, into new folders
    write_checkpoint(project / "ckpts" / "base", tiny_llama_state_dict(dtype=torch.float32, seed=5))
    third = _run(project, plugin)
    assert plugin.backend.trained == ["full", "sub", "sub", "full", "sub"]
    assert set(_statuses(third).values()) == {"ran"}
    old = {r.step.id: r.folder for r in first.steps.values()}
    assert all(record.folder != old[record.step.id] for record in third.steps.values())
    assert _outcomes(third)["sub-inside-full"].status is Status.PASS


def test_only_the_steps_of_selected_checks_run(project: Path) -> None:
    plugin = FakeBackendPlugin()
    session = _run(project, plugin, keyword="full-sparsity")
    assert plugin.backend.trained == ["full"]
    assert _statuses(session) == {"full": "ran"}


def test_a_failing_step_errors_only_the_checks_that_read_it(project: Path) -> None:
    spec = project / "steps.sparsecheck.yaml"
    spec.write_text(SPEC.replace("seed: 1}", "seed: 1, fail: true}"), encoding="utf-8")
    plugin = FakeBackendPlugin()
    session = _run(project, plugin)
    assert plugin.backend.trained == ["full"]  # sub needs the full run's mask: never started
    assert _statuses(session) == {
        "full": "failed",
        "full-mask": "blocked",
        "sub": "blocked",
        "sub-mask": "blocked",
    }
    assert {r.message for r in session.steps.values() if r.status == "blocked"} == {
        "needs step 'full', which failed"
    }
    outcomes = _outcomes(session)
    assert outcomes["independent"].status is Status.PASS
    for check_id in ("full-sparsity", "sub-inside-full"):
        outcome = outcomes[check_id]
        assert outcome.status is Status.ERROR and outcome.error_kind == "internal"
        assert "steps.sparsecheck.yaml:11:5: step 'full' failed: RuntimeError: boom" in outcome.message
    assert session.exitstatus == ExitCode.INTERNAL_ERROR
    work = project / ".sparsecheck_cache" / "work"
    assert [p.name for p in work.iterdir()] == []  # the failed build left nothing behind


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("fake, algorithm: dpo, base: base, data", "fak, algorithm: dpo, base: base, data"),
            "step 'full': train.backend: unknown training backend 'fak' (did you mean 'fake'?)",
        ),
        (
            ("algorithm: dpo, base: base, data", "algorithm: ppo, base: base, data"),
            "step 'full': train.algorithm: training backend 'fake' has no algorithm 'ppo' "
            "(did you mean 'dpo'?); its algorithms: dpo, sft",
        ),
    ],
)
def test_unknown_backends_and_algorithms_are_usage_errors_found_before_training(
    project: Path, edit: tuple[str, str], message: str
) -> None:
    spec = project / "steps.sparsecheck.yaml"
    assert SPEC.count(edit[0]) == 1
    spec.write_text(SPEC.replace(*edit), encoding="utf-8")
    plugin = FakeBackendPlugin()
    session = _run(project, plugin)
    assert plugin.backend.requests == []
    outcome = _outcomes(session)["full-sparsity"]
    assert outcome.status is Status.ERROR and outcome.error_kind == "usage"
    assert outcome.message.endswith(f"steps.sparsecheck.yaml:11:5: {message}")
    assert _outcomes(session)["independent"].status is Status.PASS
    assert session.exitstatus == ExitCode.USAGE_ERROR


def test_a_missing_mask_file_is_a_usage_error(project: Path) -> None:
    spec = project / "steps.sparsecheck.yaml"
    spec.write_text(SPEC.replace("mask: full-mask,", "mask: masks/none.safetensors,"), encoding="utf-8")
    session = _run(project, FakeBackendPlugin())
    outcome = _outcomes(session)["sub-inside-full"]
    assert outcome.error_kind == "usage"
    missing = project.resolve() / "masks" / "none.safetensors"
    assert outcome.message.endswith(
        f"steps.sparsecheck.yaml:4:5: step 'sub': train.mask: no such file {missing}"
    )


def _tree(folder: Path, skip: Path | None = None) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder`` (but ``skip``): size, modification time and content hash."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (skip is None or skip not in path.parents):
            stat = path.stat()
            files[str(path)] = (stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return files


def test_steps_write_nothing_outside_the_work_folder(project: Path) -> None:
    cache = project / ".sparsecheck_cache"
    before = _tree(project, skip=cache)
    session = _run(project, FakeBackendPlugin(), no_cache=True)
    assert _tree(project, skip=cache) == before
    work = cache / "work"
    assert sorted(p.name for p in cache.iterdir()) == [".gitignore", "CACHEDIR.TAG", "work"]
    # each step's output is one complete folder named by its id and key
    expected = sorted(f"{record.step.id}-{record.key}" for record in session.steps.values())
    assert sorted(p.name for p in work.iterdir()) == expected
    assert all(r.folder is not None and r.folder.parent == work for r in session.steps.values())


@pytest.mark.parametrize(("beside_model", "run_folder"), [(False, "snaps"), (True, "run")])
def test_snapshots_are_a_run_for_transient_metrics(
    project: Path, beside_model: bool, run_folder: str
) -> None:
    edit = (
        f"seed: 1, steps: 4, snapshots_beside_model: {str(beside_model).lower()}}}, snapshots: {{every: 2}}}}"
    )
    (project / "steps.sparsecheck.yaml").write_text(
        SPEC.replace("seed: 1}}", edit)
        + "  - {id: transient, metric: transient_updates, args: {base: base, run: [full.run]}}\n",
        encoding="utf-8",
    )
    session = _run(project, FakeBackendPlugin())
    full = next(r for r in session.steps.values() if r.step.id == "full")
    assert full.outputs["full.run"] == full.folder / run_folder
    assert sorted(p.name for p in (full.folder / run_folder).iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert sorted(p.name for p in full.outputs["full"].iterdir()) == ["model.safetensors"]
    curve = _outcomes(session)["transient"].result
    assert curve.series["step"] == [2, 4]
    assert curve.series["transient_share"][-1] == 0.0  # the last snapshot is the final model
    assert curve.series["transient_share"][0] > 0.3
    assert _outcomes(session)["full-sparsity"].status is Status.PASS


def test_the_json_report_lists_steps_with_their_log(project: Path) -> None:
    report = project / "report.json"
    _run(project, FakeBackendPlugin(), json_path=report)
    steps = {entry["id"]: entry for entry in json.loads(report.read_text())["steps"]}
    assert [steps[i]["status"] for i in ("full", "full-mask", "sub", "sub-mask")] == ["ran"] * 4
    full = steps["full"]
    assert (full["action"], full["backend"], full["algorithm"], full["seed"]) == ("train", "fake", "dpo", 1)
    assert full["series"] == {"step": [1, 2, 3, 4], "loss": [1.0, 0.5, 1 / 3, 0.25]}
    assert full["outputs"] == {"full": f"{full['folder']}/model"}
    assert steps["sub"]["mask_violations"] == 0
    assert steps["full-mask"]["policy"] == "exact" and steps["full-mask"]["tensors"] == len(_base(project))


@pytest.fixture
def work(tmp_path: Path) -> WorkFolder:
    return WorkFolder(tmp_path)


def test_a_crashed_build_never_looks_complete(work: WorkFolder) -> None:
    with pytest.raises(RuntimeError), work.build("a", "k1") as folder:
        (folder / "model").mkdir()
        work.write_record(folder, {"outputs": {}})
        raise RuntimeError("crash after writing")
    assert work.completed("a", "k1") is None
    assert list(work.root.iterdir()) == []


def test_a_finished_build_is_renamed_into_place(work: WorkFolder) -> None:
    with work.build("a", "k1") as folder:
        assert folder.parent == work.root and folder.name.startswith(".a-k1.")
        assert work.completed("a", "k1") is None
        (folder / "x").write_text("output")
        work.write_record(folder, {"outputs": {"a": "x"}})
    assert work.completed("a", "k1") == {"outputs": {"a": "x"}}
    assert [p.name for p in work.root.iterdir()] == ["a-k1"]


def test_a_folder_missing_an_output_is_rebuilt(work: WorkFolder) -> None:
    for content in ("first", "second"):
        with work.build("a", "k1") as folder:
            (folder / "x").write_text(content)
            work.write_record(folder, {"outputs": {"a": "x"}})
        if content == "first":
            (work.folder("a", "k1") / "x").unlink()
            assert work.completed("a", "k1") is None
    assert (work.folder("a", "k1") / "x").read_text() == "second"
    assert [p.name for p in work.root.iterdir()] == ["a-k1"]


def test_a_deleted_output_is_trained_again_and_equal_content_is_reused(project: Path) -> None:
    plugin = FakeBackendPlugin()
    first = _run(project, plugin)
    full = next(record for record in first.steps.values() if record.step.id == "full")
    shutil.rmtree(full.outputs["full"])
    second = _run(project, plugin)
    assert plugin.backend.trained == ["full", "sub", "full"]
    # the fake backend is deterministic: the same full checkpoint, so the mask and sub are reused
    assert _statuses(second) == {"full": "ran", "full-mask": "reused", "sub": "reused", "sub-mask": "reused"}
