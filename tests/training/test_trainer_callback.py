"""``SparsecheckCallback``: a spec runs against each checkpoint a transformers Trainer saves; the
results go to the trainer's log; a FAIL stops training after that save."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

SPEC = """\
version: 1
checkpoints: {{base: '{base}', tuned: '${{checkpoint}}'}}
checks:
  - id: moved
    metric: update_sparsity
    args: {{base: base, tuned: tuned, policy: exact}}
    expect: {expect}
"""


def _train(tmp_path: Path, expect: str, attach_trainer: bool = False, **callback: Any) -> tuple[Any, Any]:
    import torch
    from transformers import Trainer, TrainingArguments

    from sparsecheck.integrations import SparsecheckCallback
    from sparsecheck.training._tiny import write_tiny_causal_lm

    base = write_tiny_causal_lm(tmp_path / "base")
    spec = tmp_path / "gate.sparsecheck.yaml"
    spec.write_text(SPEC.format(base=base, expect=expect))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(0)
    ids = torch.randint(4, model.config.vocab_size, (8, 12))
    data = [{"input_ids": row, "labels": row} for row in ids]
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        save_steps=2,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        use_cpu=True,
        bf16=False,
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data)
    gate = SparsecheckCallback(spec, options={"cache_dir": tmp_path / "cache"}, **callback)
    if attach_trainer:  # log through trainer.log, as SparsecheckCallback(spec, trainer=trainer) does
        gate.trainer = trainer
    trainer.add_callback(gate)
    trainer.train()
    return trainer, gate


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SPARSECHECK_DISABLE_PLUGIN_AUTOLOAD", "1")


def test_every_save_is_checked_and_logged(tmp_path: Path) -> None:
    trainer, gate = _train(tmp_path, "{lt: 0.5}", attach_trainer=True)
    assert [r.step for r in gate.results] == [2, 4]
    assert [r.checkpoint.name for r in gate.results] == ["checkpoint-2", "checkpoint-4"]
    for result in gate.results:
        (outcome,) = result.outcomes
        assert outcome.status.value == "PASS" and outcome.value < 0.5  # lr 1e-2 moves nearly every weight
    logged = [e for e in trainer.state.log_history if "sparsecheck/moved" in e]
    assert [e["step"] for e in logged] == [2, 4]
    assert all(e["sparsecheck/failed"] == 0 and e["sparsecheck/passed"] == 1 for e in logged)
    assert trainer.state.global_step == 4


def test_a_failing_check_stops_training_after_that_save(tmp_path: Path) -> None:
    trainer, gate = _train(tmp_path, "{gt: 0.9}")  # a sparse update: not at lr 1e-2
    assert trainer.state.global_step == 2
    (result,) = gate.results
    assert result.failed and result.exitstatus == 1
    (entry,) = [e for e in trainer.state.log_history if "sparsecheck/failed" in e]
    assert entry["sparsecheck/failed"] == 1


def test_without_stop_on_fail_training_goes_on(tmp_path: Path) -> None:
    trainer, gate = _train(tmp_path, "{gt: 0.9}", stop_on_fail=False)
    assert trainer.state.global_step == 4
    assert [bool(r.failed) for r in gate.results] == [True, True]


def test_importing_the_integrations_does_not_import_transformers() -> None:
    import subprocess

    code = "import sys, sparsecheck.integrations; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
