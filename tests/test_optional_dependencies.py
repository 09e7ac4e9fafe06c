"""The core runs without torch, transformers, matplotlib and huggingface_hub; each missing extra
is one usage error naming it; importing sparsecheck and its pytest plugin stays light.

Each case runs in a fresh interpreter where those packages cannot be imported (``None`` in
``sys.modules``, as if not installed); CI also runs the installed wheel in a venv without them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparsecheck._extras import EXTRAS, MissingExtra, install_command, require
from sparsecheck.exitcodes import ExitCode
from sparsecheck.testing import plant_changes, planted_pair, tiny_llama_state_dict, write_checkpoint

OPTIONAL = ("torch", "transformers", "matplotlib", "huggingface_hub")
#: Every metric that reads tensors, with arguments over the checkpoints base, tuned and tuned2.
PAIR = "{base: base, tuned: tuned}"
CHECKS = {
    "update_sparsity": PAIR,
    "update_mask": "{base: base, tuned: tuned, output: mask.safetensors}",
    "update_rank": PAIR,
    "layernorm_sparsity": PAIR,
    "tolerance_sweep": PAIR,
    "weight_similarity": "{sub: tuned, full: tuned2, base: base}",
    "mask_overlap": "{base: base, run_a: tuned, run_b: tuned2}",
    "mask_agreement": "{base: base, runs: [tuned, tuned2]}",
    "transient_updates": "{base: base, run: [tuned, tuned2]}",
    "update_categories": "{base: base, run: [tuned, tuned2]}",
}
BLOCK = f"import sys\nfor name in {OPTIONAL!r}:\n    sys.modules[name] = None\n"


def without_extras(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the optional packages cannot be imported."""
    env_code = BLOCK + code
    return subprocess.run(
        [sys.executable, "-c", env_code], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return without_extras(f"from sparsecheck.cli import main\nsys.exit(main({args!r}))", cwd)


def test_diff_run_validate_and_every_tensor_metric_without_torch(tmp_path: Path) -> None:
    pair = planted_pair(tmp_path, fraction=0.25)
    diffed = cli(["diff", str(pair.base), str(pair.tuned), "--json", "diff.json"], tmp_path)
    assert diffed.returncode == ExitCode.OK, diffed.stderr
    [outcome] = json.loads((tmp_path / "diff.json").read_text())["checks"]
    assert outcome["result"]["fields"]["changed"] == pair.changed
    second, _ = plant_changes(tiny_llama_state_dict(dtype=torch.bfloat16), 0.1, seed=5)
    write_checkpoint(tmp_path / "tuned2", second)
    spec = tmp_path / "core.sparsecheck.yaml"
    checks = "".join(
        f"  - {{id: {metric}, metric: {metric}, args: {args}}}\n" for metric, args in CHECKS.items()
    )
    spec.write_text(
        f"version: 1\ncheckpoints: {{base: '{pair.base}', tuned: '{pair.tuned}', tuned2: tuned2}}\n"
        f"checks:\n{checks}"
    )
    validated = cli(["validate", str(spec)], tmp_path)
    assert validated.returncode == ExitCode.OK, validated.stdout + validated.stderr
    ran = cli(["run", str(spec), "--json", "run.json"], tmp_path)
    report = json.loads((tmp_path / "run.json").read_text())
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses == dict.fromkeys(CHECKS, "PASS"), ran.stdout + ran.stderr
    rank = next(c for c in report["checks"] if c["id"] == "update_rank")
    assert rank["result"]["fields"]["device"] == "cpu"
    masked = cli(["mask", str(pair.base), str(pair.tuned), "-o", "cli-mask.safetensors"], tmp_path)
    assert masked.returncode == ExitCode.OK, masked.stderr
    assert (tmp_path / "cli-mask.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "needed", "extra"),
    [
        (["diff", "base.bin", "tuned.bin"], "torch", "torch"),
        (["smollm2", "--model-dir", "smollm2"], "torch", "train"),
        (["demo", "--tiny", "--out", "demo"], "torch", "train"),
    ],
)
def test_each_missing_extra_is_one_line_naming_it(
    tmp_path: Path, args: list[str], needed: str, extra: str
) -> None:
    for side in ("base", "tuned"):
        write_checkpoint(tmp_path / f"{side}.bin", tiny_llama_state_dict(layers=1), layout="bin")
    done = cli(args, tmp_path)
    assert done.returncode == ExitCode.USAGE_ERROR
    # A usage error of the command is its stderr line; a checkpoint's, the check's error line.
    said = [line.strip() for line in (done.stderr + done.stdout).splitlines() if "not installed" in line]
    assert len(said) == 1, done.stdout + done.stderr
    assert said[0].endswith(f"needs {needed}, which is not installed: {install_command(extra)}")


def test_update_rank_on_cuda_needs_the_torch_extra(tmp_path: Path) -> None:
    pair = planted_pair(tmp_path, fraction=0.25)
    spec = tmp_path / "rank.sparsecheck.yaml"
    spec.write_text(
        f"version: 1\ncheckpoints: {{base: '{pair.base}', tuned: '{pair.tuned}'}}\nchecks:\n"
        "  - {id: rank, metric: update_rank, args: {base: base, tuned: tuned, device: cuda}}\n"
    )
    done = cli(["run", str(spec), "--json", "r.json"], tmp_path)
    [check] = json.loads((tmp_path / "r.json").read_text())["checks"]
    assert done.returncode == ExitCode.USAGE_ERROR
    assert (
        check["message"]
        == f"update_rank: device: cuda needs torch, which is not installed: {install_command('torch')}"
    )


def test_importing_sparsecheck_its_pytest_plugin_and_testing_kit_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sparsecheck, sparsecheck.pytest_plugin\n"
        "light = {m for m in ('numpy', 'yaml', 'click', 'jsonschema') if m in sys.modules}\n"
        "import sparsecheck.testing\n"
        "print(sorted(light), 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import sys\n" + code], capture_output=True, text=True, check=True
    )
    assert done.stdout.split("\n")[0] == "[] False"


def test_the_public_names_resolve_lazily() -> None:
    import sparsecheck

    for name in sparsecheck.__all__:
        assert getattr(sparsecheck, name) is not None
    assert sparsecheck.hookimpl.project_name == "sparsecheck"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        sparsecheck.nothing  # noqa: B018


def test_require_names_the_extra_and_keeps_broken_installs_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra) as info:
        require("matplotlib", "report.html: figures")
    assert str(
        info.value
    ) == "report.html: figures needs matplotlib, which is not installed: " + install_command("plots")
    assert info.value.exit_code == ExitCode.USAGE_ERROR
    broken = tmp_path / "broken_package"
    broken.mkdir()
    (broken / "__init__.py").write_text("import a_dependency_it_lacks\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_dependency_it_lacks"):  # a broken install shows
        require("broken_package", "anything", "torch")
    with pytest.raises(ValueError, match="unknown extra"):
        install_command("gpu")


def test_every_extra_of_pyproject_is_known() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("not run from a source tree")
    extras = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert set(EXTRAS) == set(extras) - {"dev", "all"}
    assert extras["all"] == [f"sparsecheck[{','.join(EXTRAS)}]"]
    core = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert not [d for d in core if d.split(">")[0].split("=")[0] in ("torch", "transformers", "matplotlib")]
