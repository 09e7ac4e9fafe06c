"""A run given as a Trainer output folder expands to its checkpoint-<step> subfolders in step order."""

from __future__ import annotations

from pathlib import Path

import torch

from sparsecheck.testing import plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint


def test_run_folder_expands_in_step_order(tmp_path: Path) -> None:
    base = tiny_llama_state_dict(dtype=torch.float32)
    write_checkpoint(tmp_path / "base", base)
    final, final_masks = plant_changes(base, 0.2, seed=1)
    transient, _ = plant_changes(base, 0.3, seed=2)
    # steps 2 and 10 move entries that are back at the base by step 100 (the final state)
    for step, state in ((100, final), (2, transient), (10, transient)):
        write_checkpoint(tmp_path / "run" / f"checkpoint-{step}", state)
    spec = tmp_path / "run.sparsecheck.yaml"
    spec.write_text(
        "version: 1\n"
        "checkpoints: {base: base, rl: run}\n"
        "checks:\n"
        "  - {id: cats, metric: update_categories, args: {base: base, run: [rl]}}\n"
        "  - {id: curve, metric: transient_updates, args: {base: base, run: [rl]}}\n",
        encoding="utf-8",
    )
    session = run_spec(spec, options={"no_cache": True})
    cats, curve = (o.result for o in session.outcomes)
    assert cats is not None and curve is not None
    assert curve.series["step"] == [2, 10, 100]
    total = sum(m.numel() for m in final_masks.values())
    consistent = sum(int(m.sum()) for m in final_masks.values())
    assert cats.fields["consistent"] == consistent / total
    assert curve.series["transient_share"][-1] == 0.0
    assert curve.series["transient_share"][0] > 0.5
