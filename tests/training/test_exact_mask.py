"""Exact masking on plain torch models: gradients, restoring, freezing, name matching, checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sparsecheck.errors import UsageError
from sparsecheck.metrics._maskfile import MaskWriter
from sparsecheck.training._masking import ExactMask, checkpoint_violations, read_masks

State = dict[str, torch.Tensor]


class Tied(torch.nn.Module):
    """An embedding and a head sharing one weight, like a tied LM; plus a hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(12, 6)
        self.hidden = torch.nn.Linear(6, 6)
        self.extra = torch.nn.Linear(6, 6, bias=False)
        self.head = torch.nn.Linear(6, 12, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.hidden(self.embed(tokens)))
        logits: torch.Tensor = self.head(hidden + self.extra(hidden))
        return logits


def planted_masks(model: torch.nn.Module, seed: int = 0) -> dict[str, np.ndarray]:
    """About 40% trainable per parameter; ``extra.weight`` wholly frozen."""
    rng = np.random.default_rng(seed)
    masks = {name: rng.random(tuple(p.shape)) < 0.4 for name, p in model.named_parameters()}
    masks["extra.weight"][:] = False
    return masks


def fresh_model(seed: int = 0) -> tuple[Tied, State]:
    torch.manual_seed(seed)
    model = Tied()
    return model, {name: t.clone() for name, t in model.state_dict().items()}


def changed_frozen(model: torch.nn.Module, base: State, masks: dict[str, np.ndarray]) -> int:
    """Frozen entries whose bits differ from base (an independent count through int32 views)."""
    state = model.state_dict()
    return sum(
        int((state[n].view(torch.int32) != base[n].view(torch.int32))[~torch.from_numpy(m)].sum())
        for n, m in masks.items()
    )


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 4) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        tokens = torch.randint(0, 12, (8,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(tokens), tokens.roll(1))
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()


OPTIMIZERS: dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]] = {
    "adamw-decay": lambda ps: torch.optim.AdamW(ps, lr=0.2, weight_decay=0.5),
    "sgd-momentum-decay": lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.9, weight_decay=0.5),
}


@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
def test_restoring_keeps_frozen_entries_bitwise_while_trainable_ones_move(optimizer_name: str) -> None:
    model, base = fresh_model()
    masks = planted_masks(model)
    exact = ExactMask(model, masks)
    optimizer = OPTIMIZERS[optimizer_name](list(model.parameters()))
    exact.attach(optimizer)
    train(model, optimizer)

    assert changed_frozen(model, base, masks) == 0
    assert exact.violations(base) == {
        "embed.weight": 0,
        "hidden.weight": 0,
        "hidden.bias": 0,
        "extra.weight": 0,
    }
    assert exact.stats.fixed > 0  # weight decay moved frozen entries: restoring was needed
    assert exact.stats.restores == 4
    state = model.state_dict()
    for name, mask in masks.items():
        trainable = torch.from_numpy(mask)
        assert bool((state[name] != base[name])[trainable].all()), name
    assert not model.extra.weight.requires_grad
    assert model.hidden.weight.requires_grad
    assert exact.stats.frozen_parameters == ["extra.weight"]
    assert exact.stats.trainable == sum(int(m.sum()) for n, m in masks.items() if n != "head.weight")


def test_negative_control_without_restoring_reports_violations() -> None:
    model, base = fresh_model()
    masks = planted_masks(model)
    exact = ExactMask(model, masks)  # gradients masked, but never restored
    optimizer = OPTIMIZERS["adamw-decay"](list(model.parameters()))
    train(model, optimizer)

    found = exact.violations(base)
    assert sum(found.values()) == changed_frozen(model, base, masks) > 0
    assert found["extra.weight"] == 0  # no gradient: AdamW skips it, decay included


def test_gradients_of_frozen_entries_are_zeroed_before_clipping_even_when_nan() -> None:
    weight = torch.nn.Parameter(torch.tensor([[4.0, -1.0, 9.0], [-2.0, 16.0, -3.0]]))
    model = torch.nn.Module()
    model.register_parameter("w", weight)
    trainable = np.array([[True, False, True], [False, True, False]])
    ExactMask(model, {"w": trainable})
    # d/dw sqrt(w) = 0.5 / sqrt(w): NaN at the negative (frozen) entries
    torch.sqrt(weight).sum().backward()  # type: ignore[no-untyped-call]

    assert weight.grad is not None
    expected = torch.tensor([[0.25, 0.0, 1 / 6], [0.0, 0.125, 0.0]])
    assert torch.equal(weight.grad, expected)
    norm = torch.nn.utils.clip_grad_norm_([weight], max_norm=1e9)
    assert torch.isclose(norm, torch.linalg.vector_norm(expected))


def test_tied_weights_are_one_parameter_under_either_name() -> None:
    model, _ = fresh_model()
    masks = planted_masks(model)
    masks["head.weight"] = masks["embed.weight"].copy()
    exact = ExactMask(model, masks)
    assert [m.name for m in exact._masked] == ["embed.weight", "hidden.weight", "hidden.bias"]

    only_head = planted_masks(model)
    only_head["head.weight"] = only_head.pop("embed.weight")
    other = fresh_model()[0]
    exact = ExactMask(other, only_head)  # the head's name covers the shared weight
    assert exact.parameters["head.weight"] is other.embed.weight


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda m: m.update({"head.weight": ~m["embed.weight"]}),
            "'embed.weight' and 'head.weight' are one tied",
        ),
        (
            lambda m: m.update({"encoder.weight": np.ones(3, bool)}),
            "mask tensor 'encoder.weight' is not a parameter",
        ),
        (lambda m: m.pop("hidden.bias"), "the mask has no entry for parameter 'hidden.bias'"),
        (lambda m: [a.fill(False) for a in m.values()], "the mask marks no entry trainable"),
        (
            lambda m: m.update({"hidden.bias": np.ones(5, bool)}),
            "'hidden.bias': shape (5,) but the parameter is (6,)",
        ),
    ],
    ids=["tied-differ", "unknown", "missing", "shape", "nothing-trainable"],
)
def test_mask_errors_name_the_tensor(edit: Callable[[dict[str, np.ndarray]], object], message: str) -> None:
    model, _ = fresh_model()
    masks = planted_masks(model)
    edit(masks)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ExactMask(model, masks)


def test_masks_read_from_a_mask_file(tmp_path: Path) -> None:
    model, _ = fresh_model()
    masks = planted_masks(model)
    path = tmp_path / "m.mask.safetensors"
    with MaskWriter(path, {"policy": "exact", "tol": "0.0"}) as writer:
        for name, mask in masks.items():
            writer.add(name, mask)
    read = read_masks(path)
    assert list(read) == list(masks)
    assert all(np.array_equal(read[n], masks[n]) for n in masks)


def test_checkpoint_violations_compare_saved_values_across_dtypes(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    base = {
        "a": torch.randn(5, 4, generator=generator).bfloat16(),
        "b": torch.randn(7, generator=generator).bfloat16(),
    }
    masks = {"a": np.zeros((5, 4), bool), "b": np.ones(7, bool), "gone": np.zeros(2, bool)}
    masks["a"][1:3] = True
    tuned = {name: t.float() for name, t in base.items()}  # upcast: equal values, other dtype
    tuned["a"][0, 0] += 1.0  # frozen: a violation
    tuned["a"][4, 3] = -tuned["a"][4, 3]  # frozen: a violation
    tuned["a"][1, 2] += 1.0  # trainable: allowed
    tuned["b"] += 1.0  # all trainable
    base["gone"] = torch.zeros(2)
    save_file(base, str(tmp_path / "base.safetensors"))
    save_file(tuned, str(tmp_path / "tuned.safetensors"))

    found = checkpoint_violations(tmp_path / "base.safetensors", tmp_path / "tuned.safetensors", masks)
    assert found.by_tensor == {"a": 2, "b": 0}
    assert found.not_compared == ["gone"]
    assert found.total == 2
