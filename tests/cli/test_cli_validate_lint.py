"""``sparsecheck validate`` as a CI lint, run as a user runs it (the console script, from a
working folder, relative paths): every file checked, one ``path:line:col: message`` line per
problem, an unset ``${env:NAME}`` a warning, ``--check-paths``; and what ``run`` and ``validate``
read at the repository root."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from cli_support import run_console_script, write_spec

from sparsecheck.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
#: An environment variable no test environment sets.
UNSET = "SPARSECHECK_LINT_TEST_UNSET_ROOT"
CHECK = "  - {{id: {id}, metric: update_sparsity, args: {{base: base, tuned: tuned}}{extra}}}\n"


def _check(check_id: str, extra: str = "") -> str:
    return CHECK.format(id=check_id, extra=extra)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_every_files_problems_are_listed_and_an_unset_variable_is_a_warning(tmp_path: Path) -> None:
    # An unset variable at line 3, then a bad check at line 6 of the same file: both are found.
    write_spec(
        tmp_path / "specs",
        f"version: 1\ncheckpoints:\n  base: ${{env:{UNSET}}}/base\n  tuned: tuned\nchecks:\n"
        + _check("a")
        + _check("b", ", per: galaxy"),
        "a.sparsecheck.yaml",
    )
    write_spec(tmp_path / "specs", "version: 1\nchekcs: []\n", "b.sparsecheck.yaml")
    write_spec(
        tmp_path / "specs" / "sub",
        "version: 1\ncheckpoints: {base: x, tuned: y}\nchecks:\n" + _check("c"),
        "c.sparsecheck.yaml",
    )
    result = run_console_script(tmp_path, "validate", "specs")
    assert result.code == ExitCode.USAGE_ERROR, result.out + result.err
    assert _lines(result.err) == [
        f"specs/a.sparsecheck.yaml:3:9: warning: environment variable '{UNSET}' is not set "
        f"(checked as ${UNSET})",
        "specs/a.sparsecheck.yaml:7:77: per: 'galaxy' is not a granularity of metric 'update_sparsity' "
        "(it has: tensor, layer, module)",
        "specs/b.sparsecheck.yaml:2:1: unknown key 'chekcs' (did you mean 'checks'?)",
    ]
    assert result.out == "failed: 2 errors in 2 of 3 spec files; 1 warning\n"

    # Only the warning left: the lint passes, and says so.
    (tmp_path / "specs" / "b.sparsecheck.yaml").unlink()
    text = (tmp_path / "specs" / "a.sparsecheck.yaml").read_text()
    (tmp_path / "specs" / "a.sparsecheck.yaml").write_text(text.replace(", per: galaxy", ""))
    passed = run_console_script(tmp_path, "validate", "specs")
    assert passed.code == ExitCode.OK, passed.out + passed.err
    assert _lines(passed.err) == [_lines(result.err)[0]]
    assert passed.out == "ok: 3 checks in 2 spec files; 1 warning\n"
    # `run` still needs the variable: one line, exit 4.
    ran = run_console_script(tmp_path, "run", "specs/a.sparsecheck.yaml")
    assert ran.code == ExitCode.USAGE_ERROR
    assert _lines(ran.err) == [
        f"sparsecheck: error: specs/a.sparsecheck.yaml:3:9: environment variable '{UNSET}' is not set"
    ]
    with_it = run_console_script(tmp_path, "validate", "specs", **{UNSET: "/data"})
    assert (with_it.code, with_it.err, with_it.out) == (ExitCode.OK, "", "ok: 3 checks in 2 spec files\n")


def test_every_bad_check_of_a_file_is_listed(tmp_path: Path) -> None:
    checks = [
        _check("a"),
        "  - {id: t1, use: bad}\n",  # two checks from one bad template: its error is listed once
        "  - {id: t2, use: bad}\n",
        "  - {id: b, metric: update_sparsty, args: {base: base, tuned: tuned}}\n",
        _check("c", ", expect: {gt: {check: b}}"),  # refers to a bad check: not an error of its own
        "  - {id: d, metric: update_sparsity, args: {base: base, tuned: tuned, tol: fast}}\n",
        _check("a"),
    ]
    template = "templates:\n  bad: {metric: update_sparsity, args: {base: base, tuned: tuned, tol: slow}}\n"
    text = "version: 1\ncheckpoints: {base: x, tuned: y}\n" + template + "checks:\n" + "".join(checks)
    write_spec(tmp_path, text, "s.sparsecheck.yaml")
    result = run_console_script(tmp_path, "validate", "s.sparsecheck.yaml")
    assert result.code == ExitCode.USAGE_ERROR
    assert [line.split(": ", 1) for line in _lines(result.err)] == [
        ["s.sparsecheck.yaml:4:72", "args.tol: expected a number, got 'slow'"],
        ["s.sparsecheck.yaml:9:21", "unknown metric 'update_sparsty' (did you mean 'update_sparsity'?)"],
        ["s.sparsecheck.yaml:11:76", "args.tol: expected a number, got 'fast'"],
        ["s.sparsecheck.yaml:12:5", "duplicate check id 'a' (first at line 6)"],
    ]
    assert result.out == "failed: 4 errors in 1 of 1 spec files\n"
    ran = run_console_script(tmp_path, "run", "s.sparsecheck.yaml")  # run stops at the first
    assert ran.code == ExitCode.USAGE_ERROR
    assert _lines(ran.err) == ["sparsecheck: error: " + _lines(result.err)[0]]


def test_inside_github_actions_each_problem_is_also_an_annotation(tmp_path: Path) -> None:
    check = "  - {id: a, metric: update_sparsty, args: {base: base, tuned: tuned}}\n"
    text = f"version: 1\ncheckpoints: {{base: '${{env:{UNSET}}}', tuned: t}}\nchecks:\n" + check
    write_spec(tmp_path / "specs", text, "a.sparsecheck.yaml")
    result = run_console_script(tmp_path, "validate", "specs", GITHUB_ACTIONS="true")
    assert result.code == ExitCode.USAGE_ERROR
    assert len(_lines(result.err)) == 2  # the plain lines stay
    assert _lines(result.out) == [
        f"::warning file=specs/a.sparsecheck.yaml,line=2,col=21::environment variable '{UNSET}' is not set "
        f"(checked as ${UNSET})",
        "::error file=specs/a.sparsecheck.yaml,line=4,col=21::unknown metric 'update_sparsty' "
        "(did you mean 'update_sparsity'?)",
        "failed: 1 error in 1 of 1 spec files; 1 warning",
    ]
    off = run_console_script(tmp_path, "validate", "--annotations", "none", "specs", GITHUB_ACTIONS="true")
    assert off.out == "failed: 1 error in 1 of 1 spec files; 1 warning\n" and off.err == result.err


def test_a_missing_path_and_a_file_no_collector_reads_are_errors_among_the_others(tmp_path: Path) -> None:
    write_spec(tmp_path, "version: 1\ncheckpoints: {base: x, tuned: y}\nchecks:\n" + _check("c"), "ok.yaml")
    (tmp_path / "notes.txt").write_text("not a spec")
    result = run_console_script(tmp_path, "validate", "gone.sparsecheck.yaml", "notes.txt", "ok.yaml")
    assert result.code == ExitCode.USAGE_ERROR
    errors = _lines(result.err)
    assert errors[0] == "gone.sparsecheck.yaml: no such file or folder"
    assert errors[1].startswith("notes.txt: not a spec file (sparsecheck reads .yaml and .yml files")
    assert len(errors) == 2
    assert result.out == "failed: 2 errors in 1 of 2 spec files\n"


SPEC_WITH_EVERY_KIND = f"""\
version: 1
checkpoints:
  base: ckpts/base
  tuned: ckpts/tuned
  gone: ckpts/gone
  far: /nonexistent-sparsecheck-test/model
  hub: SomeOrg/some-model
  pinned: {{path: ckpts/pinned, revision: main}}
  remote: s3://bucket/model
  unset: ${{env:{UNSET}}}/model
steps:
  - {{id: m, mask: {{base: base, tuned: tuned}}}}
checks:
{_check("c")}"""


def test_check_paths_checks_local_paths_from_the_spec_folder(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    write_spec(suite, SPEC_WITH_EVERY_KIND, "s.sparsecheck.yaml")
    for name in ("base", "tuned"):
        (suite / "ckpts" / name).mkdir(parents=True)
    # The same names under the working folder do not count: paths are the spec folder's.
    (tmp_path / "ckpts" / "gone").mkdir(parents=True)

    plain = run_console_script(tmp_path, "validate", "suite")
    assert plain.code == ExitCode.OK, plain.out + plain.err

    result = run_console_script(tmp_path, "validate", "--check-paths", "suite")
    assert result.code == ExitCode.USAGE_ERROR, result.out + result.err
    spec = "suite/s.sparsecheck.yaml"
    assert _lines(result.err) == [
        f"{spec}:5:9: checkpoints.gone: ckpts/gone: no such file or folder (looked for {suite}/ckpts/gone)",
        f"{spec}:6:8: checkpoints.far: /nonexistent-sparsecheck-test/model: no such file or folder "
        "(looked for /nonexistent-sparsecheck-test/model)",
        f"{spec}:10:10: warning: environment variable '{UNSET}' is not set (checked as ${UNSET})",
    ]
    assert result.out == (
        "failed: 2 errors in 1 of 1 spec files; 1 warning; 2 local checkpoint paths found; "
        "not checked: 1 step output, 1 URL, 2 hub ids, 1 path with an unset variable\n"
    )

    (suite / "ckpts" / "gone").mkdir()
    text = (suite / "s.sparsecheck.yaml").read_text()
    far = "  far: /nonexistent-sparsecheck-test/model\n"
    (suite / "s.sparsecheck.yaml").write_text(text.replace(far, ""))
    passed = run_console_script(tmp_path, "validate", "--check-paths", "suite")
    assert passed.code == ExitCode.OK, passed.out + passed.err
    assert passed.out.startswith("ok: 1 checks in 1 spec files; 1 warning; 3 local checkpoint paths found;")


def test_var_sets_a_variable_the_spec_leaves_to_the_command_line(tmp_path: Path) -> None:
    # As the GitHub Action's gate does: `--var candidate=…` names the checkpoint under test.
    text = "version: 1\ncheckpoints: {base: runs/base, tuned: '${candidate}'}\nchecks:\n" + _check("c")
    write_spec(tmp_path / "specs", text, "gate.sparsecheck.yaml")
    (tmp_path / "specs" / "runs" / "base").mkdir(parents=True)
    (tmp_path / "specs" / "runs" / "new").mkdir()
    without = run_console_script(tmp_path, "validate", "specs")
    assert without.code == ExitCode.USAGE_ERROR
    assert _lines(without.err)[0].startswith("specs/gate.sparsecheck.yaml:2:39: unknown variable 'candidate'")
    given = run_console_script(tmp_path, "validate", "--check-paths", "--var", "candidate=runs/new", "specs")
    assert given.code == ExitCode.OK, given.out + given.err
    assert given.out == "ok: 1 checks in 1 spec files; 2 local checkpoint paths found\n"
    wrong = run_console_script(tmp_path, "validate", "--check-paths", "--var", "candidate=runs/old", "specs")
    assert wrong.code == ExitCode.USAGE_ERROR
    assert "checkpoints.tuned: runs/old: no such file or folder" in wrong.err


def test_validate_takes_paths_and_check_paths_from_pyproject(tmp_path: Path) -> None:
    write_spec(tmp_path / "specs", "version: 1\ncheckpoints: {base: b, tuned: t}\nchecks:\n" + _check("c"))
    write_spec(tmp_path / "other", "version: 1\nchekcs: []\n")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.sparsecheck]\npaths = ["specs"]\ncheck-paths = true\n')
    (tmp_path / "sub").mkdir()
    result = run_console_script(tmp_path / "sub", "validate")
    assert result.code == ExitCode.USAGE_ERROR
    assert [line.split(": ")[1] for line in _lines(result.err)] == ["checkpoints.base", "checkpoints.tuned"]
    named = run_console_script(tmp_path, "validate", "other")  # named paths win over the file's
    assert named.code == ExitCode.USAGE_ERROR and "unknown key 'chekcs'" in named.err
    pyproject.write_text('[tool.sparsecheck]\npaths = ["specs"]\nschema = true\n')
    unknown = run_console_script(tmp_path, "validate")
    assert unknown.code == ExitCode.USAGE_ERROR
    [line] = _lines(unknown.err)
    assert line.startswith(f"sparsecheck: error: {pyproject}: [tool.sparsecheck] schema: unknown key")


def _copy_of_the_repository(folder: Path) -> Path:
    """The repository's pyproject.toml and every spec file (plugins' included), no checkpoints."""
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    ignore = shutil.ignore_patterns("checkpoints", "out", "__pycache__")
    shutil.copytree(ROOT / "specs", folder / "specs", ignore=ignore)
    for spec in ROOT.glob("plugins/*/specs/*.sparsecheck.yaml"):
        target = folder / spec.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(spec, target)
    return folder


def test_run_and_validate_at_the_repository_root_read_the_examples_only(tmp_path: Path) -> None:
    repo = _copy_of_the_repository(tmp_path)
    examples = sorted(p.relative_to(repo).as_posix() for p in repo.glob("specs/examples/*.sparsecheck.yaml"))
    # The example plugin's spec needs its plugin (not loaded here) and UPDATE_NORM_CKPTS: named, it fails.
    plugin_spec = run_console_script(repo, "validate", "plugins")
    assert plugin_spec.code == ExitCode.USAGE_ERROR and "unknown metric 'update_norm'" in plugin_spec.err

    validated = run_console_script(repo, "validate")
    assert validated.code == ExitCode.OK, validated.out + validated.err
    assert validated.out.endswith(f"in {len(examples)} spec files\n") and validated.err == ""
    missing = run_console_script(repo, "validate", "--check-paths")
    assert missing.code == ExitCode.USAGE_ERROR
    assert all("/checkpoints/" in line and "no such file or folder" in line for line in _lines(missing.err))

    generate = [sys.executable, "specs/examples/generate.py"]
    subprocess.run(generate, cwd=repo, check=True, capture_output=True, timeout=300)
    checked = run_console_script(repo, "validate", "--check-paths")
    assert checked.code == ExitCode.OK, checked.out + checked.err
    ran = run_console_script(repo, "run", "-q", "--json", "report.json")
    assert ran.code == ExitCode.OK, ran.out + ran.err
    report = json.loads((repo / "report.json").read_text())
    assert sorted({check["nodeid"].split("::")[0] for check in report["checks"]}) == examples
    assert {check["status"] for check in report["checks"]} <= {"PASS", "WARN"}

