"""Hostile input through the CLI: deep nesting, duplicate names, NUL bytes, alias bombs, FIFOs,
odd ``.bin`` contents and unreadable folders each end in exit 4 with one line naming the culprit,
never a traceback, a hang or a pass."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from cli_support import Runs, check_yaml, run_cli, shown, write_spec

from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import tiny_llama_state_dict, write_checkpoint

DEEP = 100_000


def _one_line(err: str, command: str = "run") -> str:
    """The one line of ``err``: ``sparsecheck: error: …``, or under ``validate`` (a lint) the
    problem's ``path:line:col: message``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    if command == "validate":
        assert not lines[0].startswith("sparsecheck:") and ".sparsecheck.yaml" in lines[0].split(": ")[0]
    else:
        assert lines[0].startswith("sparsecheck: error: ")
    return lines[0]


def _checkpoint_error(out: str, culprit: Path | str) -> str:
    """The report's line naming ``culprit`` (a check's error), with no traceback anywhere."""
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if str(culprit) in line]
    assert len(lines) == 1, out
    return lines[0]


def _safetensors(path: Path, header: bytes, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _diff(capsys: pytest.CaptureFixture[str], base: Path, tuned: Path) -> tuple[int, str]:
    result = run_cli(capsys, "diff", base, tuned)
    assert "Traceback" not in result.out + result.err
    return result.code, result.out + result.err  # exit 4 with nothing measured: the error on stderr


# --- checkpoints -----------------------------------------------------------------------------


def test_a_safetensors_header_nested_deep_is_exit_4(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _safetensors(tmp_path / "deep.safetensors", b'{"w": ' + b"[" * DEEP + b"]" * DEEP + b"}")
    code, out = _diff(capsys, file, runs.base)
    assert code == ExitCode.USAGE_ERROR
    assert "nested too deep" in _checkpoint_error(out, file)


def test_an_index_nested_deep_is_exit_4(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_checkpoint(tmp_path / "sharded", tiny_llama_state_dict(layers=1), "sharded")
    index = folder / "model.safetensors.index.json"
    index.write_bytes(b'{"weight_map": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}")
    code, out = _diff(capsys, folder, folder)
    assert code == ExitCode.USAGE_ERROR
    assert "nested too deep" in _checkpoint_error(out, index)


def test_a_tensor_listed_twice_in_a_header_is_exit_4_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [%d, %d]}'
    header = ('{"w": ' + entry % (0, 4) + ', "w": ' + entry % (4, 8) + "}").encode()
    file = _safetensors(tmp_path / "dup" / "model.safetensors", header, b"\0" * 8)
    code, out = _diff(capsys, file.parent, file.parent)
    assert code == ExitCode.USAGE_ERROR
    assert "tensor 'w' twice" in _checkpoint_error(out, file)


def test_a_tensor_listed_twice_in_an_index_is_exit_4_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_checkpoint(tmp_path / "sharded", {"a": torch.ones(2), "b": torch.ones(2)}, "sharded")
    index = folder / "model.safetensors.index.json"
    shards = json.loads(index.read_text())["weight_map"]
    pairs = ", ".join(f'"a": "{shard}"' for shard in sorted(set(shards.values())))
    index.write_text('{"weight_map": {' + pairs + ', "b": "' + shards["b"] + '"}}')
    code, out = _diff(capsys, folder, folder)
    assert code == ExitCode.USAGE_ERROR
    assert "key 'a' is given twice" in _checkpoint_error(out, index)


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"])
def test_a_weights_file_that_is_a_fifo_is_refused_not_waited_on(
    runs: Runs, tmp_path: Path, name: str
) -> None:
    folder = tmp_path / "fifo"
    folder.mkdir()
    os.mkfifo(folder / name)
    process = _console("diff", runs.base, folder, cwd=tmp_path, timeout=60)
    assert process.returncode == ExitCode.USAGE_ERROR
    assert "not a regular file" in _checkpoint_error(process.stdout + process.stderr, folder / name)


def test_a_bin_of_parameters_is_a_plain_state_dict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    (tmp_path / "base").mkdir()
    torch.save(dict(model.named_parameters()), tmp_path / "base" / "pytorch_model.bin")
    with torch.no_grad():
        model.weight[0] += 1.0  # 8 of 36 entries change
    (tmp_path / "tuned").mkdir()
    torch.save(dict(model.named_parameters()), tmp_path / "tuned" / "pytorch_model.bin")
    result = run_cli(capsys, "diff", tmp_path / "base", tmp_path / "tuned", "--json", tmp_path / "r.json")
    assert result.code == ExitCode.OK, result.out
    fields = json.loads((tmp_path / "r.json").read_text())["checks"][0]["result"]["fields"]
    assert (fields["changed"], fields["compared"]) == (8, 36)


def test_a_bin_holding_a_meta_tensor_is_exit_4_naming_it(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "meta").mkdir()
    file = tmp_path / "meta" / "pytorch_model.bin"
    torch.save({"w": torch.empty(3, device="meta"), "b": torch.ones(2)}, file)
    code, out = _diff(capsys, file.parent, file.parent)
    assert code == ExitCode.USAGE_ERROR
    assert "tensor 'w' is a meta tensor" in _checkpoint_error(out, file)


@pytest.mark.parametrize("layout", ["dir", "bin"])
def test_a_checkpoint_whose_tensors_are_all_empty_is_exit_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    folder = write_checkpoint(tmp_path / "empty", {"w": torch.ones(0, 4), "b": torch.ones(0)}, layout)
    code, out = _diff(capsys, folder, folder)
    assert code == ExitCode.USAGE_ERROR
    assert re.search(r"every compared tensor has 0 entries \((b, w|w, b)\): nothing to compare", out)


def _as_nobody() -> list[str] | None:
    """A command prefix running as user ``nobody``, when this process may switch to it."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("what", ["folder", "file", "parent"])
def test_a_checkpoint_that_cannot_be_read_is_exit_4(runs: Runs, what: str) -> None:
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("needs root to run sparsecheck as user nobody (permissions do not bind root)")
    with tempfile.TemporaryDirectory() as name:  # pytest's own folders are private to root
        root = Path(name)
        root.chmod(0o755)
        _unreadable_checkpoint_case(runs, root, prefix, what)


def _unreadable_checkpoint_case(runs: Runs, root: Path, prefix: list[str], what: str) -> None:
    folder = write_checkpoint(root / "parent" / "ckpt", tiny_llama_state_dict(layers=1))
    for path in (root / "parent", folder):
        path.chmod(0o755)
    (folder / "model.safetensors").chmod(0o644)
    base = root / "base"
    shutil.copytree(runs.base, base)
    for path in (base, *base.iterdir()):
        path.chmod(0o755)
    locked = {"folder": folder, "file": folder / "model.safetensors", "parent": root / "parent"}[what]
    locked.chmod(0)
    process = subprocess.run(
        [*prefix, sys.executable, "-m", "sparsecheck", "diff", "--no-cache", base, folder],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(root)},
    )
    locked.chmod(0o755)
    assert process.returncode == ExitCode.USAGE_ERROR, process.stdout + process.stderr
    line = _checkpoint_error(process.stdout + process.stderr, locked)  # the path itself or the file in it
    assert "cannot read: Permission denied" in line


# --- spec files ------------------------------------------------------------------------------


def _console(
    *args: str | os.PathLike[str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparsecheck", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
    )


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize(
    "nesting",
    [
        "vars: {x: " + "[" * 5000 + "]" * 5000 + "}\n",
        "vars:\n" + "".join("  " * i + f"  k{i}:\n" for i in range(3000)),
    ],
    ids=["flow-lists", "block-maps"],
)
def test_a_spec_nested_thousands_deep_is_exit_4(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, nesting: str
) -> None:
    spec = write_spec(tmp_path, runs.header() + nesting + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}"))
    result = run_cli(capsys, command, spec)
    assert result.code == ExitCode.USAGE_ERROR
    line = _one_line(result.err, command)
    assert f"{shown(spec)}:" in line and "nested more than 100 deep" in line


def test_a_spec_with_a_nul_byte_is_exit_4_at_its_line(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = runs.header() + "checks:\n" + check_yaml("a\0b", "rl_a", "{gt: 0.5}")
    spec = write_spec(tmp_path, text)
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.USAGE_ERROR
    line = _one_line(result.err)
    row = text.count("\n", 0, text.index("\0")) + 1
    assert f"{shown(spec)}:{row}:" in line and "#x0000 is not allowed" in line


def _alias_bomb(key: str) -> str:
    """Nine levels of nine aliases: 9^9 values once expanded."""
    lines = [f'  {key}0: &{key}0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 9):
        lines.append(f"  {key}{level}: &{key}{level} [" + ", ".join([f"*{key}{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("where", ["vars", "args"])
def test_a_yaml_alias_bomb_is_a_fast_exit_4(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, where: str
) -> None:
    if where == "vars":
        text = (
            runs.header() + "vars:\n" + _alias_bomb("v") + "checks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}")
        )
    else:
        bomb = _alias_bomb("v").replace("\n  ", "\n      ").replace("  v0", "      v0", 1)
        text = (
            runs.header()
            + "checks:\n  - id: a\n    metric: update_sparsity\n    expect: {gt: 0.5}\n"
            + "    args:\n      base: base\n      tuned: rl_a\n      extra:\n"
            + bomb.replace("      ", "        ")
        )
    spec = write_spec(tmp_path, text)
    result = run_cli(capsys, command, spec)
    assert result.code == ExitCode.USAGE_ERROR
    line = _one_line(result.err, command)
    assert f"{shown(spec)}:" in line and "aliases expand to more than 100000 values" in line


def test_a_recursive_alias_is_exit_4(runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(
        tmp_path, runs.header() + "vars:\n  x: &x [*x]\nchecks:\n" + check_yaml("a", "rl_a", "{gt: 0.5}")
    )
    result = run_cli(capsys, "run", spec)
    assert result.code == ExitCode.USAGE_ERROR
    assert "recursive alias" in _one_line(result.err)


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_spec_path_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "x.sparsecheck.yaml"
    os.mkfifo(fifo)
    process = _console(command, fifo.name, cwd=tmp_path, timeout=60)
    assert process.returncode == ExitCode.USAGE_ERROR
    line = _one_line(process.stderr, command)
    assert f"{fifo.name}: cannot read the spec file: not a regular file" in line
