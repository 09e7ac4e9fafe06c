"""Property tests of every parser of untrusted input: the safetensors header, the sharded-index
reader and the spec loader.  Any bytes in → a result or a :class:`SparsecheckError` with exit code
4, never another exception and never a hang (sizes, nesting and alias expansion are bounded)."""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsecheck._manager import get_plugin_manager
from sparsecheck._registry import collect_metrics
from sparsecheck.checkpoints._formats import read_weight_map
from sparsecheck.checkpoints._safetensors import SafetensorsFile
from sparsecheck.errors import SparsecheckError
from sparsecheck.exitcodes import ExitCode
from sparsecheck.metrics._api import Metric
from sparsecheck.spec._loader import load_spec

#: Few examples each: the suite stays fast; the strategies aim at the edges instead.
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@pytest.fixture(scope="module")
def metrics() -> dict[str, Metric]:
    return collect_metrics(get_plugin_manager())


def _json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=20,
    )


_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
_DTYPES = st.sampled_from(["F32", "BF16", "F16", "I64", "BOOL", "F8_E4M3", "X", ""])
_INTS = st.lists(st.integers(-3, 40), max_size=4)
_ENTRY = st.fixed_dictionaries(
    {},
    optional={"dtype": _DTYPES | _SCALARS, "shape": _INTS | _json_values(_SCALARS), "data_offsets": _INTS},
)
_HEADERS = st.dictionaries(st.text(max_size=4), _ENTRY | _json_values(_SCALARS), max_size=5)


def _nested(depth: int, opener: bytes, closer: bytes) -> bytes:
    return opener * depth + closer * depth


_RAW_HEADERS = st.one_of(
    st.binary(max_size=200),
    _HEADERS.map(lambda h: json.dumps(h).encode()),
    st.integers(1, 200_000).map(lambda d: b'{"w": ' + _nested(d, b"[", b"]") + b"}"),
    st.builds(  # one name twice
        lambda name, a, b: f'{{"{name}": {json.dumps(a)}, "{name}": {json.dumps(b)}}}'.encode(),
        st.text("abc", min_size=1, max_size=3),
        _ENTRY,
        _ENTRY,
    ),
)


def _expect_usage_error(error: SparsecheckError) -> None:
    assert error.exit_code == ExitCode.USAGE_ERROR
    assert "\n" not in str(error)


@FEW
@given(header=_RAW_HEADERS, data=st.binary(max_size=64), length_slack=st.integers(-16, 16))
def test_any_safetensors_header_gives_tensors_or_one_usage_error(
    scratch: Path, header: bytes, data: bytes, length_slack: int
) -> None:
    file = scratch / "x.safetensors"
    length = max(0, len(header) + length_slack) if length_slack % 4 == 0 else len(header)
    file.write_bytes(struct.pack("<Q", length) + header + data)
    try:
        opened = SafetensorsFile(file)
    except SparsecheckError as error:
        _expect_usage_error(error)
        assert str(file) in str(error)
        return
    try:
        for name, stored in opened.tensors.items():
            assert opened.array(name).nbytes == stored.nbytes
    finally:
        opened.close()


@FEW
@given(
    raw=st.binary(max_size=300) | _json_values(_SCALARS).map(lambda v: json.dumps({"weight_map": v}).encode())
)
def test_any_index_gives_a_weight_map_or_one_usage_error(scratch: Path, raw: bytes) -> None:
    index = scratch / "model.safetensors.index.json"
    index.write_bytes(raw)
    try:
        weight_map = read_weight_map(index)
    except SparsecheckError as error:
        _expect_usage_error(error)
        assert str(index) in str(error)
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items())


_VALID_SPEC = """\
version: 1
vars: {t: 0.5}
checkpoints: {base: a, tuned: b}
checks:
  - id: s
    metric: update_sparsity
    args: {base: base, tuned: tuned, policy: rtol}
    expect: {gt: ${t}}
"""


def _yaml_documents() -> st.SearchStrategy[str]:
    plain = _json_values(_SCALARS).map(lambda v: yaml.safe_dump(v, default_flow_style=None))
    mutated = st.builds(
        lambda at, junk: _VALID_SPEC[:at] + junk + _VALID_SPEC[at:],
        st.integers(0, len(_VALID_SPEC)),
        st.text(
            alphabet=st.characters(max_codepoint=0x7F) | st.sampled_from("&*!|>[]{}:-\0\ufeff"), max_size=12
        ),
    )
    deep = st.builds(
        lambda depth, flow: (
            "vars: {x: " + _nested(depth, b"[", b"]").decode() + "}\n"
            if flow
            else "vars:\n" + "".join("  " * i + f"  k{i}:\n" for i in range(depth))
        ),
        st.integers(1, 2000),
        st.booleans(),
    )
    bombs = st.builds(
        lambda levels, width: (
            "vars:\n  a0: &a0 [x]\n"
            + "".join(
                f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]\n" for i in range(1, levels)
            )
        ),
        st.integers(1, 12),
        st.integers(1, 12),
    )
    return st.one_of(st.text(max_size=200), plain, mutated, deep, bombs)


@FEW
@given(text=_yaml_documents())
def test_any_spec_text_gives_a_spec_or_one_usage_error(
    scratch: Path, metrics: dict[str, Metric], text: str
) -> None:
    spec = scratch / "x.sparsecheck.yaml"
    spec.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_spec(spec, metrics)
    except SparsecheckError as error:
        _expect_usage_error(error)
        assert str(spec) in str(error)
        return
    assert loaded.path == spec
