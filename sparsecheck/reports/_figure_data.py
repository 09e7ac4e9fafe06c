"""What the HTML report's figures draw, taken from the session's check outcomes (no plotting here).

Each function picks the results of the metrics it needs and returns plain numbers; an empty
list means the figure has no data.  Checks that computed the same metric with the same
arguments (a check and its ``per: layer`` twin) show once, labelled with the first id.

Loss curves come from any result, of any metric or training backend: a result whose
``series`` has a ``step`` list and a ``loss`` list (or ``loss_<name>`` lists) of the same
length is drawn as one loss curve per such list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from sparsecheck.engine._outcome import CheckOutcome
from sparsecheck.metrics._api import MetricResult, Scalar
from sparsecheck.metrics._grouping import OTHER, layer_of, module_of
from sparsecheck.metrics.layernorm_sparsity import NORM_PATTERNS, is_norm

#: Fields of update_sparsity shown side by side: the policy's sparsity and its storage confounders.
SPARSITY_FIELDS = ("sparsity", "sparsity_exact", "sparsity_if_bf16")
CATEGORY_FIELDS = ("consistent", "transient", "untouched")
OVERLAP_FIELDS = ("o1", "baseline_o1", "baseline_o1_matched")
LOSS_PREFIX = "loss"


@dataclass(frozen=True)
class Labelled:
    """A distinct result and the checks that computed it."""

    ids: tuple[str, ...]
    #: What was compared, e.g. ``sft → rl_a``.
    detail: str
    result: MetricResult

    @property
    def label(self) -> str:
        extra = f" (+{len(self.ids) - 1} more)" if len(self.ids) > 1 else ""
        return f"{self.ids[0]}{extra}"


@dataclass(frozen=True)
class Bars:
    """One bar group: values by field name (NaN where the result lacks the field)."""

    item: Labelled
    values: dict[str, float]


@dataclass(frozen=True)
class Curve:
    label: str
    x: list[float]
    y: list[float]
    #: Curves of different groups (a training step's algorithm) are not drawn on one axis.
    group: str = ""


def number(value: Scalar) -> float:
    """``value`` as a float; NaN for None, text and booleans."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _pair_detail(args: Mapping[str, object]) -> str:
    """What a check compared: ``base → tuned``, ``base → last of run``, or ``run_a vs run_b``."""
    base, tuned, run = args.get("base"), args.get("tuned"), args.get("run")
    if isinstance(run, list) and run:
        tuned = run[-1]
    first, second = (args.get(f"run_{s}") or args.get(f"mask_{s}") for s in "ab")
    if first is not None and second is not None:
        return f"{PurePath(str(first)).name} vs {PurePath(str(second)).name}"
    return f"{base} → {tuned}" if base is not None and tuned is not None else ""


def distinct(outcomes: Iterable[CheckOutcome], metrics: Sequence[str]) -> list[Labelled]:
    """The results of ``metrics``, one per distinct (metric, arguments), in check order."""
    seen: dict[str, list[str]] = {}
    first: dict[str, tuple[CheckOutcome, MetricResult]] = {}
    for outcome in outcomes:
        if outcome.result is None or outcome.check.metric not in metrics:
            continue
        key = repr((outcome.check.metric, sorted(outcome.check.args.items())))
        seen.setdefault(key, []).append(outcome.check.id)
        first.setdefault(key, (outcome, outcome.result))
    return [
        Labelled(tuple(ids), _pair_detail(first[key][0].check.args), first[key][1])
        for key, ids in seen.items()
    ]


def _bars(items: Iterable[Labelled], fields: Sequence[str]) -> list[Bars]:
    return [Bars(item, {f: number(item.result.fields.get(f)) for f in fields}) for item in items]


def sparsity_bars(outcomes: Sequence[CheckOutcome]) -> list[Bars]:
    """Unchanged fraction per update_sparsity / layernorm_sparsity check (exact and bf16 alongside)."""
    return _bars(distinct(outcomes, ("update_sparsity", "layernorm_sparsity")), SPARSITY_FIELDS)


def category_bars(outcomes: Sequence[CheckOutcome]) -> list[Bars]:
    """Consistent / transient / untouched fractions per update_categories check."""
    return _bars(distinct(outcomes, ("update_categories",)), CATEGORY_FIELDS)


def overlap_bars(outcomes: Sequence[CheckOutcome]) -> list[Bars]:
    """o1 against its uniform and magnitude-matched chance baselines per mask_overlap check."""
    bars = _bars(distinct(outcomes, ("mask_overlap",)), OVERLAP_FIELDS)
    return [b for b in bars if not math.isnan(b.values["o1"])]


def layer_index(name: str) -> int | None:
    """The layer number of a tensor name (``model.layers.3.mlp…`` → 3), None outside layers."""
    layer = layer_of(name)
    return None if layer == OTHER else int(layer.rsplit(".", 1)[-1])


def short_module_names(modules: Iterable[str]) -> dict[str, str]:
    """Each module type's shortest dotted tail that no other one shares, ``.weight`` dropped
    (``model.layers.*.self_attn.q_proj.weight`` → ``q_proj``; a bias keeps its module's name:
    ``q_proj.bias``)."""
    parts = {m: m.split("*.", 1)[-1].removesuffix(".weight").split(".") for m in modules}
    names: dict[str, str] = {}
    for module, pieces in parts.items():
        shortest = 1 if module.endswith(".weight") else 2
        for length in range(min(shortest, len(pieces)), len(pieces) + 1):
            tail = pieces[-length:]
            if all(other[-length:] != tail for m, other in parts.items() if m != module):
                break
        names[module] = ".".join(tail)
    return names


def layerwise_lines(result: MetricResult) -> dict[str, list[tuple[int, float]]]:
    """Per module type (short name): (layer index, sparsity) of its tensors, by layer.

    From the ``tensor`` groups; normalization parameters and tensors outside the numbered
    layers are left out.
    """
    lines: dict[str, list[tuple[int, float]]] = {}
    for name, fields in result.groups.get("tensor", {}).items():
        layer = layer_index(name)
        if layer is None or is_norm(name, NORM_PATTERNS):
            continue
        lines.setdefault(module_of(name), []).append((layer, number(fields.get("sparsity"))))
    short = short_module_names(lines)
    return {short[module]: sorted(points) for module, points in lines.items()}


def layerwise_panels(
    outcomes: Sequence[CheckOutcome],
) -> list[tuple[Labelled, dict[str, list[tuple[int, float]]]]]:
    """One panel of :func:`layerwise_lines` per update_sparsity check that has any."""
    panels = [(item, layerwise_lines(item.result)) for item in distinct(outcomes, ("update_sparsity",))]
    return [(item, lines) for item, lines in panels if lines]


def _series_curve(
    label: str, result: MetricResult, x_key: str, y_key: str, group: str = ""
) -> Curve | None:
    x, y = result.series.get(x_key), result.series.get(y_key)
    if not x or not y or len(x) != len(y):
        return None
    return Curve(label, [number(v) for v in x], [number(v) for v in y], group)


def transient_curves(outcomes: Sequence[CheckOutcome]) -> dict[str, list[Curve]]:
    """Step vs ``transient_share`` and vs ``transient_fraction``, one curve per check."""
    curves: dict[str, list[Curve]] = {"transient_share": [], "transient_fraction": []}
    for item in distinct(outcomes, ("transient_updates",)):
        for key, found in curves.items():
            curve = _series_curve(item.label, item.result, "step", key)
            if curve is not None:
                found.append(curve)
    return {key: found for key, found in curves.items() if found}


def loss_curves(outcomes: Sequence[CheckOutcome]) -> list[Curve]:
    """Step vs each ``loss`` / ``loss_<name>`` series of any result (one curve per series),
    grouped by the ``algorithm`` argument (training steps: losses of different algorithms are
    on different scales)."""
    curves = []
    for outcome in outcomes:
        result = outcome.result
        if result is None or "step" not in result.series:
            continue
        for key in result.series:
            if key == LOSS_PREFIX or key.startswith(f"{LOSS_PREFIX}_"):
                label = outcome.check.id if key == LOSS_PREFIX else f"{outcome.check.id}: {key}"
                group = str(outcome.check.args.get("algorithm", ""))
                curve = _series_curve(label, result, "step", key, group)
                if curve is not None:
                    curves.append(curve)
    return curves


def tolerance_curves(outcomes: Sequence[CheckOutcome]) -> list[Curve]:
    """Tolerance vs sparsity per tolerance_sweep check."""
    curves = []
    for item in distinct(outcomes, ("tolerance_sweep",)):
        curve = _series_curve(item.label, item.result, "tolerance", "sparsity")
        if curve is not None:
            curves.append(curve)
    return curves
