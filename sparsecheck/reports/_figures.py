"""The HTML report's figures, drawn with matplotlib (the ``plots`` extra) on the Agg canvas.

One function per figure: it takes the session's outcomes and returns a PNG (bytes), or None
when the outcomes hold none of its data.  matplotlib is imported only when a figure is drawn,
and never through pyplot, so no global backend state changes; :func:`require_matplotlib`
raises ImportError when it is missing.  What each figure reads is in ``_figure_data``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsecheck.engine._outcome import CheckOutcome
from sparsecheck.metrics.tolerance_sweep import ROBUST_RANGE
from sparsecheck.reports._figure_data import (
    Bars,
    Curve,
    category_bars,
    layerwise_panels,
    loss_curves,
    overlap_bars,
    sparsity_bars,
    tolerance_curves,
    transient_curves,
)
from sparsecheck.reports._table import format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
WIDTH = 10.0
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def require_matplotlib() -> None:
    """Raise ImportError unless matplotlib can be imported."""
    import matplotlib  # noqa: F401


def _figure(height: float, width: float = WIDTH) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _style(ax: Axes) -> None:
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def _bar_label(bars: Bars) -> str:
    """The check id, then what it compared: the pair, the policy, how many checkpoints, norms only."""
    result = bars.item.result
    fields = result.fields
    policy = str(fields.get("policy", ""))
    if policy and policy != "exact":
        policy += f" {format_value(fields.get('tol'))}"
    checkpoints = fields.get("checkpoints")
    observed = f"{checkpoints} checkpoints" if isinstance(checkpoints, int) else ""
    norms = "norms only" if result.metric == "layernorm_sparsity" else ""
    detail = " · ".join(part for part in (bars.item.detail, policy, observed, norms) if part)
    return f"{bars.item.label}\n{detail}" if detail else bars.item.label


def _at_least_visible_span(ax: Axes, values: Sequence[float], span: float = 0.01) -> None:
    """Y limits around ``values`` no narrower than ``span``, without an offset on the ticks, so
    equal sparsities read as one flat line, not as noise magnified."""
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        low, high = min(finite), max(finite)
        pad = max(span - (high - low), 0.0) / 2 + 0.05 * (high - low)
        ax.set_ylim(low - pad, high + pad)
    ax.ticklabel_format(axis="y", useOffset=False)


def _decade(value: float) -> str:
    """``1e-6`` for 1e-06 (tick and legend text)."""
    return f"1e{round(math.log10(value))}"


def _horizontal_bars(
    groups: Sequence[Bars], series: Sequence[tuple[str, str, str]], stacked: bool, legend_columns: int
) -> bytes:
    """Bar groups top to bottom; ``series`` are (field, legend label, colour)."""
    shown = [s for s in series if any(not math.isnan(g.values[s[0]]) for g in groups)]
    rows = len(groups) * (1 if stacked else len(shown))
    figure = _figure(height=max(2.2, 1.0 + 0.32 * rows + 0.25 * len(groups)))
    ax = figure.add_subplot()
    height = 0.8 if stacked else 0.8 / len(shown)
    positions = list(range(len(groups)))
    left = [0.0] * len(groups)
    for index, (field, label, colour) in enumerate(shown):
        values = [g.values[field] for g in groups]
        y = positions if stacked else [p - 0.4 + height * (index + 0.5) for p in positions]
        drawn = ax.barh(y, values, height=height, left=left if stacked else None, color=colour, label=label)
        texts = ["" if math.isnan(v) or (stacked and v < 0.05) else format_value(v) for v in values]
        ax.bar_label(
            drawn, texts, label_type="center" if stacked else "edge", padding=0 if stacked else 3, fontsize=8
        )
        if stacked:
            left = [a + (0.0 if math.isnan(v) else v) for a, v in zip(left, values, strict=True)]
    ax.set_yticks(positions, [_bar_label(g) for g in groups], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0 if stacked else 1.12)
    ax.set_xlabel("fraction of entries")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=legend_columns, frameon=False, fontsize=9)
    _style(ax)
    return _png(figure)


def unchanged_fraction(outcomes: Sequence[CheckOutcome]) -> bytes | None:
    """Seed Fig. 1: the unchanged fraction of each run, with exact and bf16-storage sparsity."""
    groups = sparsity_bars(outcomes)
    if not groups:
        return None
    series = (
        ("sparsity", "sparsity (the check's policy)", PALETTE[0]),
        ("sparsity_exact", "exact (stored bits equal)", PALETTE[1]),
        ("sparsity_if_bf16", "if both sides were stored in bf16", PALETTE[2]),
    )
    return _horizontal_bars(groups, series, stacked=False, legend_columns=3)


def update_categories(outcomes: Sequence[CheckOutcome]) -> bytes | None:
    """Seed Fig. 2: consistent / transient / untouched fractions per run, stacked."""
    groups = category_bars(outcomes)
    if not groups:
        return None
    series = (
        ("consistent", "consistent (changed at the end)", PALETTE[0]),
        ("transient", "transient (moved, then back at base)", PALETTE[1]),
        ("untouched", "untouched", "#c7c7c7"),
    )
    return _horizontal_bars(groups, series, stacked=True, legend_columns=3)


def layerwise_sparsity(outcomes: Sequence[CheckOutcome]) -> bytes | None:
    """Seed Fig. 3a: per update_sparsity check, sparsity by layer, one line per module type."""
    from matplotlib.ticker import MaxNLocator

    panels = layerwise_panels(outcomes)
    if not panels:
        return None
    modules = list(dict.fromkeys(m for _, lines in panels for m in lines))
    colours = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(modules)}
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    figure = _figure(height=0.6 + 3.0 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    # one y range for every panel: a ±0.004 axis beside a 0–1 one would mislead
    every = [p[1] for _, lines in panels for points in lines.values() for p in points]
    for ax, (item, lines) in zip(axes, panels, strict=False):
        for module, points in lines.items():
            ax.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                markersize=3,
                color=colours[module],
                label=module,
            )
        ax.set_title(f"{item.label}\n{item.detail}", fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel("sparsity (unchanged fraction)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _at_least_visible_span(ax, every)
        _style(ax)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles = {h.get_label(): h for ax in axes for h in ax.get_lines()}
    figure.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=9)
    return _png(figure)


def _curves(ax: Axes, curves: Sequence[Curve], marker: str = "o") -> None:
    for index, curve in enumerate(curves):
        ax.plot(
            curve.x,
            curve.y,
            marker=marker,
            markersize=3,
            color=PALETTE[index % len(PALETTE)],
            label=curve.label,
        )
    _style(ax)


def transient_share(outcomes: Sequence[CheckOutcome]) -> bytes | None:
    """Seed Fig. 3b/5: transient share and transient fraction over a run's checkpoints."""
    curves = transient_curves(outcomes)
    if not curves:
        return None
    titles = {
        "transient_share": "transient share  |C_t ∧ ¬M| / |C_t|",
        "transient_fraction": "transient fraction  |C_t ∧ ¬M| / n",
    }
    figure = _figure(height=3.6)
    axes = figure.subplots(1, len(curves), squeeze=False).ravel()
    for ax, (key, found) in zip(axes, curves.items(), strict=True):
        _curves(ax, found)
        ax.set_title(titles[key], fontsize=10)
        ax.set_xlabel("step")
        ax.set_xticks(sorted({x for curve in found for x in curve.x}))  # the checkpoints' steps
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    return _png(figure)


def loss(outcomes: Sequence[CheckOutcome]) -> bytes | None:
    """Seed Fig. 4: loss per step of every result carrying ``step`` and ``loss`` series, one
    panel per algorithm (a loss of GRPO is not on DPO's scale)."""
    curves = loss_curves(outcomes)
    if not curves:
        return None
    from matplotlib.ticker import MaxNLocator

    groups: dict[str, list[Curve]] = {}
    for curve in curves:
        groups.setdefault(curve.group, []).append(curve)
    columns = min(len(groups), 3)
    rows = math.ceil(len(groups) / columns)
    figure = _figure(height=0.4 + 3.4 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (group, found) in zip(axes, groups.items(), strict=False):
        _curves(ax, found, marker="")
        if group:
            ax.set_title(group, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    return _png(figure)


def _overlap_label(bars: Bars) -> str:
    """The check id and pair, then o1's lifts over both baselines."""
    fields = bars.item.result.fields
    lifts = [
        f"{name} ×{format_value(fields[key])}"
        for key, name in (("lift_o1", "lift"), ("lift_o1_matched", "matched"))
        if isinstance(fields.get(key), int | float)
    ]
    return "\n".join(part for part in (bars.item.label, bars.item.detail, " · ".join(lifts)) if part)


def overlap_vs_chance(outcomes: Sequence[CheckOutcome]) -> bytes | None:
    """Seed Fig. 6: o1 per mask_overlap check against its uniform and magnitude-matched chance."""
    groups = overlap_bars(outcomes)
    if not groups:
        return None
    series = (
        ("o1", "observed o1", PALETTE[0]),
        ("baseline_o1", "uniform chance", "#bbbbbb"),
        ("baseline_o1_matched", "magnitude-matched chance", "#7f7f7f"),
    )
    figure = _figure(height=4.0, width=min(WIDTH, 3.0 + 2.2 * len(groups)))
    ax = figure.add_subplot()
    width = 0.8 / len(series)
    for index, (field, label, colour) in enumerate(series):
        x = [g - 0.4 + width * (index + 0.5) for g in range(len(groups))]
        values = [b.values[field] for b in groups]
        drawn = ax.bar(x, values, width=width, color=colour, label=label)
        ax.bar_label(drawn, ["" if math.isnan(v) else format_value(v) for v in values], fontsize=8)
    ax.set_xticks(range(len(groups)), [_overlap_label(b) for b in groups], fontsize=9)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("share of run 1's updated entries")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False, fontsize=8)
    _style(ax)
    return _png(figure)


def tolerance_sweep(outcomes: Sequence[CheckOutcome]) -> bytes | None:
    """Sparsity against the tolerance (log axis; τ = 0 at the left edge), robust range shaded."""
    curves = tolerance_curves(outcomes)
    if not curves:
        return None
    positive = [t for c in curves for t in c.x if t > 0]
    low, high = ROBUST_RANGE
    smallest, largest = min([*positive, low]), max([*positive, high])
    zero_at = smallest / 10
    figure = _figure(height=3.8)
    ax = figure.add_subplot()
    ax.set_xscale("log")
    ax.axvspan(
        low, high, color=PALETTE[2], alpha=0.12, label=f"seed's robust range {_decade(low)} … {_decade(high)}"
    )
    _curves(ax, [Curve(c.label, [t if t > 0 else zero_at for t in c.x], c.y) for c in curves])
    decades = range(math.floor(math.log10(smallest)), math.ceil(math.log10(largest)) + 1)
    ticks = [zero_at, *(10.0**k for k in decades)]
    ax.set_xticks(ticks, ["0", *(_decade(10.0**k) for k in decades)])
    ax.minorticks_off()
    ax.set_xlabel("tolerance τ (|Δ| ≤ τ counts as unchanged)")
    ax.set_ylabel("sparsity (unchanged fraction)")
    ax.legend(fontsize=9)
    return _png(figure)


@dataclass(frozen=True)
class FigureKind:
    """A figure of the report: its anchor, title, caption and drawing function."""

    key: str
    title: str
    caption: str
    draw: Callable[[Sequence[CheckOutcome]], bytes | None]


FIGURES = (
    FigureKind(
        "unchanged-fraction",
        "Unchanged fraction per run (seed Fig. 1)",
        "Share of entries each run left unchanged, per update_sparsity / layernorm_sparsity check: under the "
        "check's equality policy, exactly (stored bits equal), and after rounding both sides to bf16 (for "
        "pairs stored wider than bf16). A gap between these bars is storage precision, not training.",
        unchanged_fraction,
    ),
    FigureKind(
        "update-categories",
        "Update categories over a run (seed Fig. 2)",
        "Entries changed at the end (consistent), changed at some observed checkpoint but back at the base "
        "by the end (transient), and never changed at an observed checkpoint (untouched).",
        update_categories,
    ),
    FigureKind(
        "layerwise-sparsity",
        "Sparsity per layer and matrix type (seed Fig. 3a)",
        "Per update_sparsity check, the unchanged fraction of each tensor by layer, one line per module "
        "type. Normalization parameters are left out (see layernorm_sparsity).",
        layerwise_sparsity,
    ),
    FigureKind(
        "transient-share",
        "Transient updates over training (seed Fig. 3b, 5)",
        "At each checkpoint t, the entries changed against the base that are unchanged at the end: as a "
        "share of those changed at t, and as a fraction of all entries.",
        transient_share,
    ),
    FigureKind(
        "loss-curves",
        "Loss curves (seed Fig. 4)",
        "Loss per step of every result that carries 'step' and 'loss' (or 'loss_<name>') series, e.g. a full "
        "run against its subnetwork-only run.",
        loss,
    ),
    FigureKind(
        "overlap-vs-chance",
        "Overlap against chance (seed Fig. 6)",
        "o1, the share of run 1's updated entries also updated in run 2, against uniform chance (|m2| / n) "
        "and magnitude-matched chance (random within strata of the base value's exponent).",
        overlap_vs_chance,
    ),
    FigureKind(
        "tolerance-sweep",
        "Tolerance sweep",
        "Sparsity as the tolerance for 'unchanged' grows; τ = 0 is exact equality. Shaded: the range in "
        "which the seed claims its results are robust.",
        tolerance_sweep,
    ),
)
