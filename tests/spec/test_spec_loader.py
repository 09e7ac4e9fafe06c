"""load_spec: checkpoints, templates, parametrize, ids, metric arguments, per/mostly, expectations."""

from __future__ import annotations

from pathlib import Path

import pytest
from spec_support import HEADER, METRICS, load, load_error, where, write

from sparsecheck.errors import SpecError
from sparsecheck.spec._loader import load_spec
from sparsecheck.spec._model import Expectation, FieldRef

SPEC = "spec.sparsecheck.yaml"
#: The selection parameters every tensor-reading metric takes, at their defaults.
SELECTION = {"include": [], "exclude": [], "on_mismatch": "error"}

DOCUMENTED = """\
version: 1
vars: {tol: 1.0e-5}
checkpoints:
  sft: ./runs/sft
  rl_a: {path: "runs/rl-a"}
  rl_b: {path: "org/model@main", revision: v2}
templates:
  sparse: {metric: update_sparsity, args: {base: sft, policy: exact}, expect: {gt: 0.7}}
checks:
  - id: rl-update-is-sparse
    metric: update_sparsity
    args: {base: sft, tuned: rl_a, policy: atol, tol: "${tol}"}
    expect: {gt: 0.70}
    warn: {gt: 0.80}
    marks: [gate]
    description: optional text
  - id: every-layer-sparse
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    per: layer
    expect: {ge: 0.60}
    mostly: 0.9
  - id: each-run-sparse
    use: sparse
    parametrize: {run: [rl_a, rl_b]}
    args: {tuned: "${run}"}
    expect: {between: [0.70, 0.99]}
  - id: paired
    metric: update_sparsity
    parametrize_zip: {base: [sft, sft], tuned: [rl_a, rl_b]}
    args: {base: "${base}", tuned: "${tuned}"}
  - id: skipped-one
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    skip: "reason"
  - id: several
    metric: update_sparsity
    args: {base: sft, tuned: rl_b}
    expect:
      - {field: o1, gt: {field: baseline_o1}}
      - {field: lift_o1, gt: 1.5}
      - {eq: 0.5, tol: 0.01}
"""


@pytest.fixture
def documented(tmp_path: Path) -> Path:
    return write(tmp_path, DOCUMENTED)


def test_the_documented_example_loads(documented: Path) -> None:
    spec = load_spec(documented, METRICS)

    def at(needle: str, occurrence: int = 0) -> str:
        return where(documented, DOCUMENTED, needle, occurrence)

    assert spec.path == documented
    assert [c.id for c in spec.checks] == [
        "rl-update-is-sparse",
        "every-layer-sparse",
        "each-run-sparse[rl_a]",
        "each-run-sparse[rl_b]",
        "paired[sft-rl_a]",
        "paired[sft-rl_b]",
        "skipped-one",
        "several",
    ]
    by_id = {c.id: c for c in spec.checks}
    first = by_id["rl-update-is-sparse"]
    assert str(first.location) == at("id: rl-update-is-sparse")
    assert first.nodeid == f"{documented.as_posix()}::rl-update-is-sparse"
    assert first.spec_path == documented
    assert dict(first.args) == {"base": "sft", "tuned": "rl_a", "policy": "atol", "tol": 1e-5, **SELECTION}
    assert first.expect == (Expectation("gt", (0.7,), first.expect[0].location),)
    assert str(first.expect[0].location) == at("{gt: 0.70}")
    assert first.warn[0].operands == (0.8,)
    assert first.marks == ("gate",)
    assert first.description == "optional text"
    assert (first.per, first.mostly, first.skip, first.params) == (None, None, None, {})

    layer = by_id["every-layer-sparse"]
    assert (layer.per, layer.mostly) == ("layer", 0.9)
    assert dict(layer.args) == {"base": "sft", "tuned": "rl_a", "policy": "atol", "tol": 1e-5, **SELECTION}

    for run in ("rl_a", "rl_b"):
        check = by_id[f"each-run-sparse[{run}]"]
        assert str(check.location) == at("id: each-run-sparse")
        assert check.params == {"run": run}
        # Template args merged key by key; the check's own expect replaces the template's.
        assert dict(check.args) == {"base": "sft", "policy": "exact", "tuned": run, "tol": 1e-5, **SELECTION}
        assert [(e.op, e.operands) for e in check.expect] == [("between", (0.7, 0.99))]

    assert by_id["paired[sft-rl_b]"].params == {"base": "sft", "tuned": "rl_b"}
    assert by_id["paired[sft-rl_b]"].args["tuned"] == "rl_b"
    assert by_id["skipped-one"].skip == "reason"
    several = by_id["several"].expect
    assert [(e.field, e.op, e.operands, e.tol) for e in several] == [
        ("o1", "gt", (FieldRef("baseline_o1"),), 0.0),
        ("lift_o1", "gt", (1.5,), 0.0),
        (None, "eq", (0.5,), 0.01),
    ]
    assert [str(e.location) for e in several] == [at("{field: o1"), at("{field: lift_o1"), at("{eq: 0.5")]


def test_the_checkpoints_table_keeps_sources_as_written(documented: Path) -> None:
    spec = load_spec(documented, METRICS)
    table = spec.checkpoints
    assert {key: (ref.source, ref.revision) for key, ref in table.items()} == {
        "sft": ("./runs/sft", None),
        "rl_a": ("runs/rl-a", None),
        "rl_b": ("org/model@main", "v2"),
    }
    assert str(table["sft"].location) == where(documented, DOCUMENTED, "./runs/sft")
    assert str(table["rl_a"].location) == where(documented, DOCUMENTED, '"runs/rl-a"')
    assert all(check.checkpoints == table for check in spec.checks)


def test_template_keys_are_defaults_and_template_errors_point_into_the_template(tmp_path: Path) -> None:
    text = (
        HEADER
        + """\
templates:
  base: {metric: update_sparsity, args: {base: sft, tuned: rl_a, policy: atl}, per: layer}
checks:
  - id: uses
    use: base
"""
    )
    error = load_error(tmp_path, text)
    spot = where(tmp_path / SPEC, text, "atl}")
    assert error == f"{spot}: args.policy: 'atl' is not one of exact, atol, rtol (did you mean 'atol'?)"


def test_template_fields_are_used_when_the_check_lacks_them(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        HEADER
        + """\
templates:
  t:
    metric: update_sparsity
    args: {base: sft, tuned: rl_a}
    per: layer
    mostly: 0.5
    marks: [x]
    expect: {gt: 0.1}
checks:
  - {id: plain, use: t}
  - {id: own, use: t, marks: [y], args: {tuned: rl_b}}
""",
    )
    plain, own = spec.checks
    assert (plain.per, plain.mostly, plain.marks, plain.expect[0].operands) == ("layer", 0.5, ("x",), (0.1,))
    assert own.marks == ("y",)
    assert (own.args["base"], own.args["tuned"]) == ("sft", "rl_b")


def test_unknown_template(tmp_path: Path) -> None:
    text = HEADER + "templates:\n  sparse: {metric: update_sparsity}\nchecks:\n  - {id: a, use: sprase}\n"
    spot = where(tmp_path / SPEC, text, "sprase")
    assert load_error(tmp_path, text) == f"{spot}: unknown template 'sprase' (did you mean 'sparse'?)"


def test_parametrize_is_a_product_in_order_with_readable_ids(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        HEADER
        + """\
vars: {runs: [rl_a, rl_b]}
checks:
  - id: grid
    metric: update_sparsity
    parametrize: {run: "${runs}", tol: [1.0e-5, 0.001, 2]}
    args: {base: sft, tuned: "${run}", tol: "${tol}"}
""",
    )
    assert [c.id for c in spec.checks] == [
        "grid[rl_a-1e-05]",
        "grid[rl_a-0.001]",
        "grid[rl_a-2]",
        "grid[rl_b-1e-05]",
        "grid[rl_b-0.001]",
        "grid[rl_b-2]",
    ]
    assert [c.args["tol"] for c in spec.checks] == [1e-5, 0.001, 2.0] * 2
    assert spec.checks[4].params == {"run": "rl_b", "tol": 0.001}


def test_parametrize_times_zip(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        HEADER
        + """\
checks:
  - id: mix
    metric: update_sparsity
    parametrize: {policy: [exact, atol]}
    parametrize_zip: {b: [sft, rl_a], t: [rl_a, rl_b]}
    args: {base: "${b}", tuned: "${t}", policy: "${policy}"}
""",
    )
    assert [c.id for c in spec.checks] == [
        "mix[exact-sft-rl_a]",
        "mix[exact-rl_a-rl_b]",
        "mix[atol-sft-rl_a]",
        "mix[atol-rl_a-rl_b]",
    ]
    assert [(c.args["policy"], c.args["base"], c.args["tuned"]) for c in spec.checks] == [
        ("exact", "sft", "rl_a"),
        ("exact", "rl_a", "rl_b"),
        ("atol", "sft", "rl_a"),
        ("atol", "rl_a", "rl_b"),
    ]


def test_a_list_value_is_named_by_its_position_in_the_id(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        HEADER
        + """\
checks:
  - id: runs
    metric: kinds_probe
    parametrize: {run: [[sft, rl_a], [sft, rl_b]]}
    args: {run: "${run}"}
""",
    )
    assert [(c.id, c.args["run"]) for c in spec.checks] == [
        ("runs[run0]", ["sft", "rl_a"]),
        ("runs[run1]", ["sft", "rl_b"]),
    ]


CHECK = HEADER + "checks:\n  - id: a\n    metric: update_sparsity\n"


@pytest.mark.parametrize(
    ("tail", "needle", "message"),
    [
        (
            "    parametrize_zip: {b: [sft, sft], t: [rl_a]}\n",
            "{b:",
            "parametrize_zip: the lists must be equally long (b: 2, t: 1)",
        ),
        (
            "    parametrize: {b: [sft]}\n    parametrize_zip: {b: [sft]}\n",
            "b: [sft]}",
            "parametrize_zip: variable 'b' is also in parametrize",
        ),
        (
            "    parametrize: {b: '${one}'}\n",
            "'${one}'",
            "parametrize.b: expected a non-empty list of values, got 'x'",
        ),
        (
            "    parametrize: {t: [rl_a, rl_aa]}\n    args: {base: sft, tuned: '${t}'}\n",
            "'${t}'",
            "a[rl_aa]: args.tuned: unknown checkpoint 'rl_aa' (did you mean 'rl_a'?)",
        ),
    ],
)
def test_parametrize_errors(tmp_path: Path, tail: str, needle: str, message: str) -> None:
    text = CHECK.replace("checks:", "vars: {one: x}\nchecks:") + tail
    spot = where(tmp_path / SPEC, text, needle, text.count(needle) - 1)
    assert load_error(tmp_path, text) == f"{spot}: {message}"


def test_duplicate_ids_point_at_the_second_check(tmp_path: Path) -> None:
    text = CHECK + "    args: {base: sft, tuned: rl_a}\n  - {id: a, metric: kinds_probe}\n"
    first_line = where(tmp_path / SPEC, text, "id: a").split(":")[-2]
    spot = where(tmp_path / SPEC, text, "{id: a")
    assert load_error(tmp_path, text) == f"{spot}: duplicate check id 'a' (first at line {first_line})"


def test_parametrized_ids_that_collide_are_duplicates(tmp_path: Path) -> None:
    text = CHECK + "    parametrize: {t: [1, 1.0]}\n    args: {base: sft, tuned: rl_a, tol: '${t}'}\n"
    spot = where(tmp_path / SPEC, text, "id: a")
    line = spot.split(":")[-2]
    assert load_error(tmp_path, text) == f"{spot}: duplicate check id 'a[1]' (first at line {line})"


@pytest.mark.parametrize(
    ("snippet", "needle", "message"),
    [
        (
            "  - id: 'a b'\n    metric: update_sparsity\n",
            "'a b'",
            "id: expected a name without spaces, ':', '[' or ']', got 'a b'",
        ),
        (
            "  - id: a\n    metric: update_sparsty\n",
            "update_sparsty",
            "unknown metric 'update_sparsty' (did you mean 'update_sparsity'?)",
        ),
        ("  - id: a\n    metric: zzz\n", "zzz", "unknown metric 'zzz' (known: kinds_probe, update_sparsity)"),
        (
            "  - id: a\n    description: x\n",
            "id: a",
            "missing required key 'metric' (or 'use' a template that has one)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a, toll: 1}\n",
            "toll",
            "args: unknown argument 'toll' of metric 'update_sparsity' (did you mean 'tol'?)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a, zzz: 1}\n",
            "zzz",
            "args: unknown argument 'zzz' of metric 'update_sparsity' "
            "(it takes: base, tuned, policy, tol, include, exclude, on_mismatch)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft}\n",
            "{base",
            "args: missing required argument 'tuned' of metric 'update_sparsity' (the checkpoint after)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n",
            "id: a",
            "args: missing required argument 'base' of metric 'update_sparsity' (the checkpoint before)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a, tol: abc}\n",
            "abc",
            "args.tol: expected a number, got 'abc'",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a, tol: true}\n",
            "true",
            "args.tol: expected a number, got true",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl-a}\n",
            "rl-a}",
            "args.tuned: unknown checkpoint 'rl-a' (did you mean 'rl_a'?)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: zzz}\n",
            "zzz",
            "args.tuned: unknown checkpoint 'zzz' (the checkpoints table has: sft, rl_a, rl_b)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: [rl_a]}\n",
            "[rl_a]",
            "args.tuned: expected a checkpoint key, got a list",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a}\n    per: layr\n",
            "layr",
            "per: 'layr' is not a granularity of metric 'update_sparsity' (did you mean 'layer'?) "
            "(it has: tensor, layer, module)",
        ),
        (
            "  - id: a\n    metric: kinds_probe\n    per: layer\n",
            "layer",
            "per: 'layer' is not a granularity of metric 'kinds_probe' (it has no per-group results)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a}\n    mostly: 0.5\n",
            "0.5",
            "mostly needs per: (the share of groups that must pass)",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a}\n    per: layer\n"
            "    mostly: '${big}'\n",
            "'${big}'",
            "mostly: expected a number in (0, 1], got 2",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a}\n"
            "    expect: {between: [0.9, 0.1]}\n",
            "[0.9",
            "expect.between: low bound 0.9 is above high bound 0.1",
        ),
        (
            "  - id: a\n    metric: update_sparsity\n    args: {base: sft, tuned: rl_a}\n"
            "    warn: [{gt: 1}, {eq: 1, tol: -1}]\n",
            "-1",
            "warn[1].tol: expected a tolerance >= 0, got -1",
        ),
    ],
)
def test_check_errors(tmp_path: Path, snippet: str, needle: str, message: str) -> None:
    text = HEADER + "vars: {big: 2}\nchecks:\n" + snippet
    spot = where(tmp_path / SPEC, text, needle, text.count(needle) - 1)
    assert load_error(tmp_path, text) == f"{spot}: {message}"


def test_no_checkpoints_table(tmp_path: Path) -> None:
    text = "version: 1\nchecks:\n  - {id: a, metric: update_sparsity, args: {base: sft, tuned: rl}}\n"
    spot = where(tmp_path / SPEC, text, "sft")
    assert (
        load_error(tmp_path, text)
        == f"{spot}: args.base: unknown checkpoint 'sft' (the spec has no checkpoints)"
    )


def test_every_parameter_kind_is_converted(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        HEADER
        + """\
checks:
  - id: defaults
    metric: kinds_probe
  - id: given
    metric: kinds_probe
    args:
      ckpt: rl_a
      run: [sft, rl_a, rl_b]
      mask: masks/m.safetensors
      ratio: 2
      count: 7
      flag: true
      label: hello
      mode: slow
      cuts: [1, 0.25]
      names: "model.*"
      maybe: 0.5
  - id: singles
    metric: kinds_probe
    args: {run: rl_b, mask: rl_a, cuts: 3, names: [a, b], maybe: null}
""",
    )
    defaults, given, singles = (dict(c.args) for c in spec.checks)
    assert defaults == {
        "ckpt": "sft",
        "run": ["sft"],
        "mask": "sft",
        "ratio": 0.5,
        "count": 3,
        "flag": False,
        "label": "x",
        "mode": "fast",
        "cuts": [0.1, 0.2],
        "names": [],
        "maybe": None,
    }
    assert given == {
        "ckpt": "rl_a",
        "run": ["sft", "rl_a", "rl_b"],
        "mask": str((tmp_path / "masks" / "m.safetensors").resolve()),
        "ratio": 2.0,
        "count": 7,
        "flag": True,
        "label": "hello",
        "mode": "slow",
        "cuts": [1.0, 0.25],
        "names": ["model.*"],
        "maybe": 0.5,
    }
    assert isinstance(given["ratio"], float) and isinstance(given["cuts"][0], float)
    assert singles["run"] == ["rl_b"] and singles["mask"] == "rl_a" and singles["cuts"] == [3.0]
    assert singles["names"] == ["a", "b"] and singles["maybe"] is None


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("count: 2.5", "args.count: expected an integer, got 2.5"),
        ("count: true", "args.count: expected an integer, got true"),
        ("flag: 'yes'", "args.flag: expected true or false, got 'yes'"),
        ("label: 5", "args.label: expected a string, got 5"),
        ("mode: fats", "args.mode: 'fats' is not one of fast, slow (did you mean 'fast'?)"),
        ("run: []", "args.run: expected a non-empty list of checkpoint keys, got an empty list"),
        ("run: [sft, rl_aa]", "args.run: unknown checkpoint 'rl_aa' (did you mean 'rl_a'?)"),
        ("cuts: [1, a]", "args.cuts: expected a list of numbers, got a list"),
        ("names: [a, 1]", "args.names: expected a list of strings, got a list"),
        ("mask: 3", "args.mask: expected a checkpoint key or a mask file path, got 3"),
        ("ratio: null", "args.ratio: expected a number, got null"),
    ],
)
def test_parameter_kind_errors(tmp_path: Path, arg: str, message: str) -> None:
    text = HEADER + f"checks:\n  - id: a\n    metric: kinds_probe\n    args:\n      {arg}\n"
    spot = where(tmp_path / SPEC, text, arg.split(": ", 1)[1])
    assert load_error(tmp_path, text) == f"{spot}: {message}"


def test_skip_true_and_false(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        HEADER
        + "checks:\n"
        + "  - {id: a, metric: kinds_probe, skip: true}\n"
        + "  - {id: b, metric: kinds_probe, skip: false}\n",
    )
    assert [c.skip for c in spec.checks] == ["skipped", None]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "a spec file is a mapping with 'version' and 'checks'; this one is empty"),
        ("- 1\n", "a spec file is a mapping with 'version' and 'checks'; this one is a list, not a mapping"),
    ],
)
def test_a_file_that_is_not_a_mapping(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / SPEC
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path, METRICS)
    assert str(info.value) == f"{path}:1:1: {message}"


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SpecError, match=r"missing.yaml: cannot read the spec file: No such file"):
        load_spec(missing, METRICS)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(SpecError, match=r"binary.yaml: not a UTF-8 text file"):
        load_spec(binary, METRICS)
