"""``--html FILE``: a real spec over planted checkpoints, rendered to one self-contained page
whose tables and figures carry the planted truth; the page without matplotlib; atomic writes."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch

from sparsecheck._config import Session
from sparsecheck._manager import DISABLE_AUTOLOAD_ENV
from sparsecheck._markers import hookimpl
from sparsecheck.cli import main
from sparsecheck.engine._outcome import CheckOutcome, Status
from sparsecheck.errors import Location, UsageError
from sparsecheck.metrics._api import Metric, MetricResult, Param, Reducer, Scalar, SkippedTensor, TensorGroup
from sparsecheck.metrics._grouping import module_of
from sparsecheck.reports import _figure_data, html
from sparsecheck.reports._figures import FIGURES, FigureKind
from sparsecheck.reports._table import format_value
from sparsecheck.spec._model import Check
from sparsecheck.testing import plant_changes, run_spec, tiny_llama_state_dict, write_checkpoint

LAYERS = 3
MODULE_OFFSET = {"q_proj": 0.02, "k_proj": 0.04, "v_proj": 0.06, "o_proj": 0.08}
MODULE_OFFSET |= {"gate_proj": 0.10, "up_proj": 0.12, "down_proj": 0.14}
#: (step, fraction changed at that checkpoint) of the RL run; the last is final.
RUN = ((10, 0.5), (20, 0.4), (30, None))
LOSS: dict[str, list[float]] = {
    "step": [0, 1, 2, 3],
    "loss": [2.0, 1.5, 1.2, 1.1],
    "loss_sub": [2.0, 1.6, 1.3, 1.15],
}
VOID = {"meta", "img", "br", "hr", "link", "input"}
#: Every figure has data in the planted spec.
DRAWN = {"unchanged-fraction", "update-categories", "layerwise-sparsity", "transient-share", "loss-curves"}
DRAWN |= {"overlap-vs-chance", "tolerance-sweep"}


def rl_fraction(name: str) -> float:
    """The planted final RL fraction of a tensor: by layer and module type; norms untouched."""
    if "norm" in name:
        return 0.0
    module = next((m for m in MODULE_OFFSET if m in name), None)
    if module is None:  # embeddings and head
        return 0.05
    layer = int(name.split(".")[2])
    return 0.05 * (layer + 1) + MODULE_OFFSET[module]


@dataclass
class Planted:
    root: Path
    spec: Path
    #: Planted sparsity of base → sft and base → final RL, and per RL tensor.
    sparsity: dict[str, float]
    tensor_sparsity: dict[str, float]
    #: Consistent / transient / untouched fractions of the RL run.
    categories: dict[str, float]
    #: o1 of the final RL run against a second run, and its two chance baselines.
    overlap: dict[str, float]


class RecordedLoss(Metric):
    """A metric that reads no tensor and reports a training log, as a training backend would."""

    name = "recorded_loss"
    summary = "a training log (test)"
    params = (Param("run", "str", "which run"),)
    value_field = "final_loss"
    reads_tensors = False

    def reducer(self, args: Mapping[str, Any]) -> Reducer:
        return _LossReducer()


class _LossReducer(Reducer):
    def update(self, group: TensorGroup) -> None:
        raise AssertionError("reads no tensor")

    def finish(self, skipped: Sequence[SkippedTensor]) -> MetricResult:
        series: dict[str, list[Scalar]] = {key: list(values) for key, values in LOSS.items()}
        return MetricResult("recorded_loss", "final_loss", {"final_loss": 1.1}, "test log", series=series)


class LossPlugin:
    @hookimpl
    def sparsecheck_add_metrics(self) -> list[Metric]:
        return [RecordedLoss()]


def _fraction_of(masks: Mapping[str, torch.Tensor]) -> float:
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    root = tmp_path_factory.mktemp("html")
    base = tiny_llama_state_dict(layers=LAYERS, dtype=torch.float32)
    write_checkpoint(root / "base", base)
    sft, sft_masks = plant_changes(base, 0.9, seed=1)
    write_checkpoint(root / "sft", sft)
    final, final_masks = plant_changes(base, {n: rl_fraction(n) for n in base}, seed=2)
    ever = {n: m.clone() for n, m in final_masks.items()}
    for step, fraction in RUN:
        state = final
        if fraction is not None:  # an intermediate state: moved entries, all back at base by the end
            state, masks = plant_changes(base, fraction, seed=step)
            ever = {n: ever[n] | masks[n] for n in ever}
        write_checkpoint(root / "rl" / f"checkpoint-{step}", state)
    rl_b, rl_b_masks = plant_changes(base, 0.3, seed=3)
    write_checkpoint(root / "rl_b", rl_b)
    spec = root / "paper.sparsecheck.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            version: 1
            checkpoints: {base: base, sft: sft, rl: rl, rl_final: rl/checkpoint-30, rl_b: rl_b}
            checks:
              - {id: sft-dense, metric: update_sparsity, args: {base: base, tuned: sft}, expect: {lt: 0.15}}
              - id: rl-sparse
                metric: update_sparsity
                args: {base: base, tuned: rl_final}
                expect: {gt: 0.6}
              - id: rl-very-sparse
                metric: update_sparsity
                args: {base: base, tuned: rl_final}
                expect: {gt: 0.99}
              - {id: norms, metric: layernorm_sparsity, args: {base: base, tuned: rl_final}, expect: {eq: 1}}
              - {id: sweep, metric: tolerance_sweep, args: {base: base, tuned: rl_final}}
              - {id: categories, metric: update_categories, args: {base: base, run: [rl]}}
              - {id: transient, metric: transient_updates, args: {base: base, run: [rl]}}
              - {id: training-log, metric: recorded_loss, args: {run: full}}
              - {id: overlap, metric: mask_overlap, args: {base: base, run_a: rl_final, run_b: rl_b}}
            """
        ),
        encoding="utf-8",
    )
    n = sum(m.numel() for m in final_masks.values())
    consistent = _fraction_of(final_masks)
    ever_fraction = sum(int(m.sum()) for m in ever.values()) / n
    return Planted(
        root,
        spec,
        {"sft": 1 - _fraction_of(sft_masks), "rl": 1 - consistent},
        {name: 1 - int(m.sum()) / m.numel() for name, m in final_masks.items()},
        {"consistent": consistent, "transient": ever_fraction - consistent, "untouched": 1 - ever_fraction},
        overlap_truth(base, final_masks, rl_b_masks),
    )


def overlap_truth(
    base: Mapping[str, torch.Tensor], m1: Mapping[str, torch.Tensor], m2: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """o1, its uniform baseline |m2| / n and its magnitude-matched one, straight from the masks:
    strata are the binary exponents of the base values (frexp), pooled over all tensors."""
    values = torch.cat([base[n].reshape(-1) for n in base])
    a, b = (torch.cat([m[n].reshape(-1) for n in base]) for m in (m1, m2))
    assert bool((values != 0).all())  # no zero stratum to set apart
    exponents = torch.frexp(values).exponent
    matched = 0.0
    for exponent in set(exponents.tolist()):
        stratum = exponents == exponent
        matched += int((a & stratum).sum()) * int((b & stratum).sum()) / int(stratum.sum())
    changed_a = int(a.sum())
    return {
        "o1": int((a & b).sum()) / changed_a,
        "baseline_o1": int(b.sum()) / values.numel(),
        "baseline_o1_matched": matched / changed_a,
    }


def run_with_html(planted: Planted, path: Path) -> Session:
    return run_spec(planted.spec, plugins=[LossPlugin()], options={"html_path": path, "no_cache": True})


@pytest.fixture(scope="module")
def report(planted: Planted, tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, Path]:
    """The planted spec's session and its page (in a folder the run creates)."""
    path = tmp_path_factory.mktemp("report") / "out" / "report.html"
    return run_with_html(planted, path), path


class Page(HTMLParser):
    """Checks that every element closes in order while parsing; keeps the elements and their
    attributes, the text, the <img> count of each figure and the results table's cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []
        #: Figure id → number of <img> inside it.
        self.figure_images: dict[str, int] = {}
        #: Results table rows as cell texts (the header row is empty: it has no <td>).
        self.rows: list[list[str]] = []
        self._figure: str | None = None
        self._in_results = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "figure":
            self._figure = attributes["id"]
            self.figure_images[self._figure] = 0
        elif tag == "img" and self._figure is not None:
            self.figure_images[self._figure] += 1
        elif tag == "table" and attributes.get("class") == "results":
            self._in_results = True
        elif tag == "tr" and self._in_results:
            self.rows.append([])
        elif tag == "td" and self._in_results:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()
        if tag == "figure":
            self._figure = None
        elif tag == "table":
            self._in_results = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    source = path.read_text("utf-8")
    assert source.startswith("<!DOCTYPE html>")
    page = Page()
    page.feed(source)
    page.close()
    assert page.stack == [], f"unclosed elements: {page.stack}"
    return page


def test_page_is_self_contained_and_shows_every_check_and_figure(report: tuple[Session, Path]) -> None:
    session, path = report
    page = parse(path)

    links = [(tag, a[key]) for tag, a in page.elements for key in ("src", "href") if key in a]
    assert links
    for tag, link in links:
        assert link.startswith(("#", "data:image/png;base64,")), f"<{tag}> links out: {link[:80]}"
    images = [a["src"] for tag, a in page.elements if tag == "img"]
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not [tag for tag, _ in page.elements if tag in ("script", "link", "iframe")]

    assert [row[0] for row in page.rows[1:]] == [o.check.id for o in session.outcomes]
    assert [row[4] for row in page.rows[1:]] == [o.status.value for o in session.outcomes]
    statuses = {o.check.id: o.status for o in session.outcomes}
    assert statuses["rl-very-sparse"] is Status.FAIL and statuses["rl-sparse"] is Status.PASS

    assert set(page.figure_images) == {f"fig-{key}" for key in DRAWN}
    assert all(count == 1 for count in page.figure_images.values())
    assert len(images) == len(DRAWN)
    text = "".join(page.text)
    assert "Not drawn" not in text and "No figure" not in text
    assert "not drawn (" not in text  # no figure failed

    rl = next(o.result for o in session.outcomes if o.check.id == "rl-sparse")
    assert rl is not None and "sparsity_if_bf16" in rl.fields
    for name in ("sparsity_if_bf16", "abs_delta_max"):
        assert f"{name}{format_value(rl.fields[name])}" in text  # the fields table: name, then value
    for info in session.checkpoints.values():
        assert info["fingerprint"] in text


def test_figure_data_is_the_planted_truth(planted: Planted, report: tuple[Session, Path]) -> None:
    outcomes = report[0].outcomes

    bars = {b.item.ids[0]: b for b in _figure_data.sparsity_bars(outcomes)}
    assert list(bars) == ["sft-dense", "rl-sparse", "norms"]
    assert bars["rl-sparse"].item.ids == ("rl-sparse", "rl-very-sparse")  # same computation, one bar
    assert bars["rl-sparse"].item.label == "rl-sparse (+1 more)"
    assert bars["rl-sparse"].item.detail == "base → rl_final"
    assert bars["sft-dense"].values["sparsity"] == pytest.approx(planted.sparsity["sft"])
    for key in ("sparsity", "sparsity_exact", "sparsity_if_bf16"):  # planted moves survive bf16
        assert bars["rl-sparse"].values[key] == pytest.approx(planted.sparsity["rl"])
    assert bars["norms"].values["sparsity"] == 1.0

    (categories,) = _figure_data.category_bars(outcomes)
    assert categories.values == pytest.approx(planted.categories)

    panels = {item.ids[0]: lines for item, lines in _figure_data.layerwise_panels(outcomes)}
    lines = panels["rl-sparse"]
    assert set(lines) == set(MODULE_OFFSET)  # short names; norms, embeddings and head left out
    for module, points in lines.items():
        assert [layer for layer, _ in points] == list(range(LAYERS))
        for layer, sparsity in points:
            name = next(n for n in planted.tensor_sparsity if f".{layer}." in n and module in n)
            assert sparsity == pytest.approx(planted.tensor_sparsity[name])

    curves = _figure_data.transient_curves(outcomes)
    assert [c.x for c in curves["transient_share"]] == [[10.0, 20.0, 30.0]]
    assert curves["transient_fraction"][0].y[-1] == 0.0  # nothing transient at the final checkpoint

    losses = _figure_data.loss_curves(outcomes)
    assert [(c.label, c.y) for c in losses] == [
        ("training-log", LOSS["loss"]),
        ("training-log: loss_sub", LOSS["loss_sub"]),
    ]
    (overlap,) = _figure_data.overlap_bars(outcomes)
    assert overlap.item.detail == "rl_final vs rl_b"
    assert overlap.values == pytest.approx(planted.overlap)
    (sweep,) = _figure_data.tolerance_curves(outcomes)
    assert sweep.x[0] == 0.0 and sweep.y[0] == pytest.approx(planted.sparsity["rl"])


def _outcome(check_id: str, result: MetricResult, args: Mapping[str, Any] | None = None) -> CheckOutcome:
    check = Check(
        id=check_id,
        metric=result.metric,
        args=dict(args or {"base": "base", "run_1": "a", "run_2": "b"}),
        location=Location("x.sparsecheck.yaml", 1, 1),
        spec_path=Path("x.sparsecheck.yaml"),
        checkpoints={},
    )
    return CheckOutcome(check, Status.PASS, result=result, value=result.value)


def overlap_outcome() -> CheckOutcome:
    fields: dict[str, Any] = {"o1": 0.82, "o2": 0.8, "baseline_o1": 0.06, "baseline_o1_matched": 0.48}
    fields |= {"lift_o1": 13.7, "lift_o1_matched": 1.71}
    return _outcome("overlap", MetricResult("mask_overlap", "o1", fields, "o1 vs chance"))


def test_overlap_figure_from_mask_overlap_fields(tmp_path: Path) -> None:
    outcome = overlap_outcome()
    (bars,) = _figure_data.overlap_bars([outcome])
    assert bars.values == {"o1": 0.82, "baseline_o1": 0.06, "baseline_o1_matched": 0.48}
    drawn = html.draw_figures([outcome])
    assert [kind.key for kind, _ in drawn.images] == ["overlap-vs-chance"]
    assert len(drawn.absent) == len(FIGURES) - 1


def test_results_without_figure_data_draw_nothing() -> None:
    result = MetricResult("weight_similarity", "equal_fraction", {"equal_fraction": 0.9}, "sim")
    drawn = html.draw_figures([_outcome("similar", result)])
    assert drawn.images == [] and drawn.failed == [] and len(drawn.absent) == len(FIGURES)
    assert "No figure: the results hold none" in html.figures_section(drawn)


def test_module_names_shorten_to_a_unique_tail() -> None:
    names = [
        "h.*.attn.c_proj.weight",
        "h.*.mlp.c_proj.weight",
        "h.*.attn.c_attn.weight",
        "h.*.attn.c_attn.bias",
    ]
    assert _figure_data.short_module_names(names) == {
        "h.*.attn.c_proj.weight": "attn.c_proj",
        "h.*.mlp.c_proj.weight": "mlp.c_proj",
        "h.*.attn.c_attn.weight": "c_attn",
        "h.*.attn.c_attn.bias": "c_attn.bias",
    }
    assert module_of("model.layers.12.mlp.up_proj.weight") == "model.layers.*.mlp.up_proj.weight"
    assert _figure_data.layer_index("model.layers.12.mlp.up_proj.weight") == 12
    assert _figure_data.layer_index("model.norm.weight") is None


def test_without_matplotlib_the_page_has_the_tables_and_says_how_to_get_figures(
    planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    path = tmp_path / "report.html"
    session = run_with_html(planted, path)
    page = parse(path)
    assert not [tag for tag, _ in page.elements if tag == "img"]
    assert page.figure_images == {}
    assert "install sparsecheck[plots] for figures" in "".join(page.text)
    assert [row[0] for row in page.rows[1:]] == [o.check.id for o in session.outcomes]


def test_a_figure_that_fails_is_named_and_the_rest_are_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(outcomes: Sequence[CheckOutcome]) -> bytes | None:
        raise ValueError("bad data")

    kinds = (FigureKind("broken", "Broken figure", "never drawn", broken), *FIGURES)
    monkeypatch.setattr(html, "FIGURES", kinds)
    drawn = html.draw_figures([overlap_outcome()])
    assert [kind.key for kind, _ in drawn.images] == ["overlap-vs-chance"]
    section = html.figures_section(drawn)
    assert "Broken figure: not drawn (ValueError: bad data)." in section
    assert "figure 'broken' not drawn: ValueError: bad data" in capsys.readouterr().err


def test_report_replaces_the_file_atomically(
    planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.html"
    path.write_text("old report")

    def failing_replace(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(UsageError, match=r"--html: cannot write .*report\.html"):
        run_with_html(planted, path)
    assert path.read_text() == "old report"
    assert os.listdir(tmp_path) == ["report.html"]  # the temp file is gone
    monkeypatch.undo()
    run_with_html(planted, path)
    assert path.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["report.html"]


def test_diff_writes_the_page_too(planted: Planted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    path = tmp_path / "diff.html"
    code = main(
        ["diff", str(planted.root / "base"), str(planted.root / "rl/checkpoint-30"), "--html", str(path)]
    )
    assert code == 0
    page = parse(path)
    assert set(page.figure_images) == {"fig-unchanged-fraction", "fig-layerwise-sparsity"}
    assert page.rows[1][0] == "update_sparsity"


def test_matplotlib_is_imported_only_for_the_html_report(planted: Planted, tmp_path: Path) -> None:
    spec = tmp_path / "one.sparsecheck.yaml"
    spec.write_text(
        f"version: 1\ncheckpoints: {{base: '{planted.root / 'base'}', sft: '{planted.root / 'sft'}'}}\n"
        "checks:\n  - {id: sft, metric: update_sparsity, args: {base: base, tuned: sft}}\n",
        encoding="utf-8",
    )
    script = textwrap.dedent(
        f"""\
        import sys
        from pathlib import Path
        from sparsecheck.testing import run_spec
        run_spec(Path({str(spec)!r}), options={{"json_path": Path({str(tmp_path / "r.json")!r})}})
        assert "matplotlib" not in sys.modules, "imported without --html"
        run_spec(Path({str(spec)!r}), options={{"html_path": Path({str(tmp_path / "r.html")!r})}})
        assert "matplotlib" in sys.modules
        """
    )
    env = {**os.environ, DISABLE_AUTOLOAD_ENV: "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr


def test_training_losses_are_grouped_by_algorithm() -> None:
    """GRPO's loss (often 0) is not drawn on DPO's axis: each algorithm gets its panel."""
    outcomes = []
    for step_id, algorithm, losses in (("dpo", "dpo", [0.69, 0.6]), ("grpo", "grpo", [0.0, 0.0])):
        check = Check(
            step_id, "training_log", {"algorithm": algorithm}, Location("s.yaml", 1, 1), Path("s"), {}
        )
        result = MetricResult("training_log", "loss", {}, "log", series={"step": [1, 2], "loss": losses})
        outcomes.append(CheckOutcome(check, Status.PASS, result=result))
    curves = _figure_data.loss_curves(outcomes)
    assert [(c.label, c.group, c.y) for c in curves] == [
        ("dpo", "dpo", [0.69, 0.6]),
        ("grpo", "grpo", [0.0, 0.0]),
    ]


def test_checks_of_the_same_id_in_two_files_are_told_apart_and_a_pass_reads_as_one() -> None:
    result = MetricResult("update_sparsity", "sparsity", {"sparsity": 0.9}, "d")
    outcomes = []
    for name in ("a.sparsecheck.yaml", "b.sparsecheck.yaml", "b.sparsecheck.yaml"):
        check_id = "only-here" if len(outcomes) == 2 else "same"
        check = Check(check_id, "update_sparsity", {}, Location(name, 1, 1), Path(name), {})
        outcomes.append(CheckOutcome(check, Status.PASS, result=result, value=0.9, expectation="value > 0.7"))
    labels = ["same (a.sparsecheck.yaml)", "same (b.sparsecheck.yaml)", "only-here"]
    assert html.check_labels(outcomes) == labels
    page = html.check_section(0, outcomes[0], "same (a.sparsecheck.yaml)")
    assert "value &gt; 0.7 holds (value 0.9)" in page and "expected" not in page
