"""PEFT LoRA adapters as the tuned checkpoint (base + B @ A · alpha / r), checked against peft's
own merge; update_rank's energy shares against planted ranks."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from sparsecheck.cli import main
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import run_spec, tiny_llama_state_dict, write_checkpoint

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

RANK = 4
TARGETS = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama base, a LoRA adapter on it (embeddings too, a rank and alpha pattern) and
    peft's merge of the two."""
    root = tmp_path_factory.mktemp("adapter")
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(root / "base")
    lora = peft.LoraConfig(
        r=RANK,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        rank_pattern={"down_proj": 2},
        alpha_pattern={"down_proj": 6},
        init_lora_weights=False,  # random B: a nonzero update
    )
    tuned = peft.get_peft_model(model, lora)
    tuned.save_pretrained(root / "adapter")
    tuned.merge_and_unload().save_pretrained(root / "merged")
    return {"base": root / "base", "adapter": root / "adapter", "merged": root / "merged"}


def _per_tensor(path: Path, base: Path, tuned: Path, metric: str, field: str) -> dict[str, Any]:
    code = main(
        ["diff", str(base), str(tuned), "--metrics", metric, "--per", "tensor", "--json", str(path), "-q"]
    )
    assert code in (ExitCode.OK, ExitCode.CHECKS_FAILED)
    [check] = json.loads(path.read_text())["checks"]
    return {name: group[field] for name, group in check["result"]["groups"]["tensor"].items()}


def test_diff_of_an_adapter_equals_peft_merge(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = _per_tensor(
        tmp_path / "a.json", models["base"], models["adapter"], "update_norm", "update_norm"
    )
    merged = _per_tensor(tmp_path / "m.json", models["base"], models["merged"], "update_norm", "update_norm")
    capsys.readouterr()
    assert adapter.keys() == merged.keys()
    for name, value in merged.items():
        assert adapter[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    moved = {name for name, value in adapter.items() if value > 0}
    layers = {f"model.layers.{i}.{module}.weight" for i in (0, 1) for module in TARGETS}
    assert moved == {"model.embed_tokens.weight", *layers}


def test_update_rank_of_an_adapter_is_at_most_r(models: dict[str, Path], tmp_path: Path) -> None:
    spec = tmp_path / "adapter.sparsecheck.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            checkpoints:
              base: '{models["base"]}'
              tuned: {{base: base, adapter: '{models["adapter"]}'}}
            checks:
              - id: rank
                metric: update_rank
                args: {{base: base, tuned: tuned, include: ["*proj*"], device: cpu, ranks: [1, 2, 4]}}
                per: tensor
                expect: {{le: 100}}
            """
        )
    )
    session = run_spec(spec, options={"no_cache": True})
    [outcome] = session.outcomes
    groups = outcome.result.groups["tensor"]
    for name, fields in groups.items():
        rank = (
            0
            if not name.endswith(tuple(f"{m}.weight" for m in TARGETS))
            else 2
            if "down_proj" in name
            else RANK
        )
        assert fields["rank"] == rank, name
        assert fields[f"energy_rank_{max(rank, 1)}"] == pytest.approx(1.0, abs=1e-5), name
        if rank == RANK:
            assert fields["energy_rank_1"] < 1 - 1e-3


def test_energy_shares_of_a_planted_spectrum(tmp_path: Path) -> None:
    """ΔW with singular values 4, 2, 1 (and zeros): top-1 share 16/21, top-2 20/21, top-8 1."""
    base = tiny_llama_state_dict(layers=1, hidden=16, intermediate=32, vocab=64)
    tuned = dict(base)
    u, _ = torch.linalg.qr(torch.randn(32, 3, generator=torch.Generator().manual_seed(1)))
    v, _ = torch.linalg.qr(torch.randn(16, 3, generator=torch.Generator().manual_seed(2)))
    name = "model.layers.0.mlp.up_proj.weight"
    tuned[name] = base[name] + u @ torch.diag(torch.tensor([4.0, 2.0, 1.0])) @ v.T
    write_checkpoint(tmp_path / "base", base)
    write_checkpoint(tmp_path / "tuned", tuned)
    spec = tmp_path / "energy.sparsecheck.yaml"
    spec.write_text(
        f"version: 1\ncheckpoints: {{base: '{tmp_path / 'base'}', tuned: '{tmp_path / 'tuned'}'}}\n"
        "checks:\n  - {id: e, metric: update_rank, args: {base: base, tuned: tuned, include: ['*up_proj*'], "
        "device: cpu, precision: float64, ranks: [1, 2, 8]}}\n"
    )
    [outcome] = run_spec(spec, options={"no_cache": True}).outcomes
    fields = outcome.result.groups["tensor"][name]
    assert fields["energy_rank_1"] == pytest.approx(16 / 21, rel=1e-5)
    assert fields["energy_rank_2"] == pytest.approx(20 / 21, rel=1e-5)
    assert fields["energy_rank_8"] == pytest.approx(1.0, rel=1e-5)
    assert outcome.result.fields["energy_rank_1_min"] == pytest.approx(16 / 21, rel=1e-5)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"use_dora": True}, "use_dora is not supported"),
        ({"peft_type": "IA3"}, "only LORA adapters"),
    ],
)
def test_unsupported_adapters_are_refused(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, message: str
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = json.loads((models["adapter"] / "adapter_config.json").read_text()) | edit
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (adapter / "adapter_model.safetensors").write_bytes(
        (models["adapter"] / "adapter_model.safetensors").read_bytes()
    )
    code = main(["diff", str(models["base"]), str(adapter)])
    out = capsys.readouterr().err
    assert code == ExitCode.USAGE_ERROR
    assert message in out and "adapter_config.json" in out


def test_an_adapter_for_another_model_names_the_tensors(
    models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Llama without grouped-query attention: v_proj is 32 x 32, the adapter's update 16 x 32.
    other = write_checkpoint(tmp_path / "other", tiny_llama_state_dict(layers=2, hidden=32, intermediate=64))
    code = main(["diff", str(other), str(models["adapter"])])
    out = capsys.readouterr().err
    assert code == ExitCode.USAGE_ERROR
    assert "do not make a (32, 32) update of 'model.layers.0.self_attn.v_proj.weight'" in out


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{base: nope, adapter: a}", "checkpoints.tuned.base: 'nope' is not a checkpoint of this table"),
        ("{path: p, base: base}", "checkpoints.tuned: base goes with adapter"),
        ("{base: base, adapter: a, revision: main}", "an adapter entry is {base: KEY, adapter: PATH}"),
    ],
)
def test_adapter_entries_in_a_spec_are_checked(tmp_path: Path, entry: str, message: str) -> None:
    from sparsecheck.errors import SpecError
    from sparsecheck.spec._loader import load_spec

    spec = tmp_path / "x.sparsecheck.yaml"
    spec.write_text(f"version: 1\ncheckpoints:\n  base: b\n  tuned: {entry}\nchecks: []\n")
    with pytest.raises(SpecError, match=re.escape(message)) as raised:
        load_spec(spec, {})
    assert raised.value.location is not None and raised.value.location.line == 4
