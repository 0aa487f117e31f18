"""The ``rfalint`` command line: a thin layer over the library API.

Exit codes follow ruff: 0 clean, 1 findings at or above ``--fail-on``, 2 usage, load or
model errors (one line on stderr; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, TextIO

import typer

import rfalint
from rfalint.analysis import parse_object_sizes
from rfalint.config import check_models, load_settings
from rfalint.errors import RfalintError, UsageError
from rfalint.fileio import check_writable, refuse_inputs, write_atomic
from rfalint.load import (NO_INPUT_SIZE, RES_REQUIRED, declared_resolution,
                          fitting_input_shape, load_model, parse_args, parse_resolution,
                          run_at_input)
from rfalint.report.json_report import to_json, to_json_all
from rfalint.rules import RULES, get_rule

if TYPE_CHECKING:
    from rich.console import Console

# Modules that only some commands or options need (rich tables, plots, sweeps, baselines,
# other formats) are imported where they are used: a `check --format json` run in a
# pre-commit hook should not pay for them (benchmarks/bench_process.py).

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Receptive-field linter for CNNs: find layers that cannot use the input resolution.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Library parameters whose flag is not ``--`` + the name with dashes.
FLAGS = {"args": "--arg", "counter": "--cost-counter"}


def flag(option: str) -> str:
    """The command-line spelling of a library option named in an error."""
    return FLAGS.get(option, "--" + option.replace("_", "-"))


# rfalint's own output stream while a command runs; sys.stdout is stderr then, so that the
# prints of user code (at import, in __init__ or forward) never corrupt JSON or SARIF.
_stdout: list[TextIO] = []


def _user_prints_to_stderr(command):
    """Decorate a command that runs user code: rfalint writes through :func:`_out`."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        with _own_stdout() as own:
            _stdout.append(own)
            saved, sys.stdout = sys.stdout, sys.stderr
            try:
                return command(*args, **kwargs)
            finally:
                sys.stdout = saved
                _stdout.pop()
    return run


@contextlib.contextmanager
def _own_stdout():
    """The stream rfalint writes its output to while user code runs.

    When sys.stdout is the process's file descriptor 1, fd 1 itself is pointed at stderr
    for the duration, so that C extensions writing to it directly (printf in a custom
    kernel) cannot corrupt the output either; rfalint then writes to a copy of the
    original descriptor. Otherwise (a redirected sys.stdout, as in tests) the stream is
    sys.stdout itself.
    """
    stdout = sys.stdout
    try:
        redirect = stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        redirect = False
    if not redirect:
        yield stdout
        return
    stdout.flush()
    original = os.dup(1)
    own = os.fdopen(os.dup(original), "w", encoding=stdout.encoding, errors=stdout.errors,
                    newline=None)
    os.dup2(2, 1)
    try:
        yield own
    finally:
        own.close()
        stdout.flush()
        os.dup2(original, 1)
        os.close(original)


def _out() -> TextIO:
    return _stdout[-1] if _stdout else sys.stdout


def _remember_debug(ctx: typer.Context, value: bool) -> bool:
    """Store ``--debug`` in the run's context object, which :func:`main` reads on errors."""
    if isinstance(ctx.obj, dict):
        ctx.obj["debug"] = value
    return value


DEBUG = typer.Option(False, "--debug", callback=_remember_debug, is_eager=True,
                     help="Show tracebacks instead of one-line errors.")
RES = typer.Option(None, "--res", "-r", help="Input resolution: N, HxW or DxHxW.")
IN_CHANNELS = typer.Option(None, "--in-channels",
                           help="Input channels \\[default: the first conv's, else 3; 3, 1, 4, 2 "
                                "are tried when that conv does not read the input].")
ARGS = typer.Option(None, "--arg", "-a", help="Factory keyword argument key=value (repeatable).")
OBJECT_SIZE = typer.Option(
    None, "--object-size", metavar="SIZE",
    help="Compare RFs with the object size instead of the image: N, HxW, LOW:HIGH, or per "
         "output OUT=LOW:HIGH,... (output name or index).")


def _console(stderr: bool = False) -> Console:
    """The rich console of text output (rich is imported here: JSON runs never need it)."""
    from rich.console import Console
    if stderr:
        return Console(stderr=True, highlight=False)
    return Console(highlight=False, soft_wrap=False, width=None if _out().isatty() else 160,
                   file=_out())


def load_for_check(target: str, res: Optional[str], in_channels: Optional[int],
                   args: Optional[List[str]]):
    """Load a target and work out its input shape; shared by every command taking MODEL."""
    if not res:
        raise UsageError(RES_REQUIRED, options=True)
    resolution = parse_resolution(res)
    loaded = load_model(target, parse_args(args))
    return loaded, fitting_input_shape(loaded.model, resolution, in_channels)


FORMATS = ("text", "json", "sarif", "github")
CONFIG = typer.Option(None, "--config", metavar="FILE",
                      help="pyproject.toml or rfalint.toml to use \\[default: the nearest one "
                           "above the current directory].")


@app.command()
@_user_prints_to_stderr
def check(
    model: Optional[str] = typer.Argument(
        None, help="file.py[:name], pkg.module:name or spec.yaml \\[default: every model in "
                   "\\[\\[tool.rfalint.models]]]"),
    res: Optional[str] = RES,
    in_channels: Optional[int] = IN_CHANNELS,
    arg: Optional[List[str]] = ARGS,
    output_format: str = typer.Option("text", "--format", "-f",
                                      help="text, json, sarif or github."),
    fail_on: Optional[str] = typer.Option(
        None, "--fail-on", help="Exit 1 on findings at or above: error, warning, info, never; "
                                "incomplete: on errors and on any analysis that could not be "
                                "completed (RFA201) \\[default: config, else error]."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Rule code prefixes to run."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Rule code prefixes to skip."),
    config: Optional[Path] = CONFIG,
    show_settings: bool = typer.Option(False, "--show-settings",
                                       help="Print the effective settings (TOML) and exit."),
    statistics: bool = typer.Option(False, "--statistics",
                                    help="Count findings per rule instead of listing them."),
    write_baseline: Optional[Path] = typer.Option(
        None, "--write-baseline", metavar="FILE",
        help="Accept the current findings: write their fingerprints to FILE and exit 0."),
    baseline: Optional[Path] = typer.Option(
        None, "--baseline", metavar="FILE", help="Report and fail only on findings not in FILE."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", metavar="FILE",
        help="Draw r_min/r_max per layer against the input (.png, .svg, .pdf; rfalint\\[plot])."),
    all_nodes: bool = typer.Option(False, "--all-nodes",
                                   help="Show every node, also activations and norms."),
    stages: bool = typer.Option(False, "--stages",
                                help="Also print the stages of the main path with their "
                                     "Information Field (IF, dIF per unit)."),
    columns: Optional[str] = typer.Option(
        None, "--columns", metavar="NAMES",
        help="Extra text columns, comma-separated: S (effective stride), P (effective "
             "padding: unit u sees input pixels from u*S - P on) \\[default: both with "
             "--all-nodes]."),
    no_cost: bool = typer.Option(False, "--no-cost",
                                 help="Skip counting params and MACs (no fvcore forward)."),
    cost_counter: str = typer.Option(
        "auto", "--cost-counter",
        help="auto (rfalint's graph counter, no forward pass; fvcore only for ops it cannot "
             "count), rfalint-graph, or fvcore (a traced forward; the cross-check)."),
    object_size: Optional[str] = OBJECT_SIZE,
    include_gates: bool = typer.Option(
        False, "--include-gates",
        help="Count full-size attention gates (CBAM spatial, BAM, attention U-Net) as feature "
             "paths: the literal max over every path. Default: excluded, as the papers do."),
    debug: bool = DEBUG,
) -> None:
    """Report per-layer receptive fields, the border layer, the tail and rule findings.

    Without MODEL, lint every model configured in \\[\\[tool.rfalint.models]].
    """
    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {output_format!r}")
    extra = _columns(columns)
    if extra is not None and output_format != "text":
        raise UsageError("--columns works with --format text")
    settings = load_settings(config).override(model=model, res=res, args=arg, select=select,
                                              ignore=ignore, fail_on=fail_on)
    if show_settings:
        _out().write(settings.to_toml())
        raise typer.Exit(0)
    if statistics and output_format not in ("text", "json"):
        raise UsageError("--statistics works with --format text or json")
    if write_baseline is not None and baseline is not None:
        raise UsageError("use either --write-baseline or --baseline, not both")
    if write_baseline is not None or baseline is not None:
        from rfalint import baseline as baselines
    accepted = baselines.load_baseline(baseline) if baseline is not None else None
    if plot is not None:
        if len(settings.models) > 1:
            raise UsageError("--plot draws one model: give MODEL, or configure a single model")
        from rfalint.visual import check_plot_path, save_rf_plot
        check_plot_path(plot)
    if object_size is not None:
        parse_object_sizes(object_size)  # bad syntax fails before any model is loaded
    results = check_models(settings, in_channels, cost=not no_cost, counter=cost_counter,
                           object_size=object_size, include_gates=include_gates)
    inputs = [settings.path, baseline, *(r.source for r in results)]
    if write_baseline is not None:
        refuse_inputs(write_baseline, inputs, "write_baseline")
        count = baselines.write_baseline(write_baseline, results)
        print(f"rfalint: wrote {count} finding fingerprints to {write_baseline}", file=sys.stderr)
        raise typer.Exit(0)
    suppressed = 0
    if accepted is not None:
        results, suppressed = baselines.apply_baseline(results, accepted)
    if plot is not None:
        refuse_inputs(plot, inputs, "plot")
        save_rf_plot(results[0].analysis, results[0].target, plot)
    if statistics:
        from rfalint.report.statistics import statistics_json, statistics_text
        _out().write((statistics_json if output_format == "json" else statistics_text)(results))
    elif output_format == "json":
        _out().write(to_json(results[0]) if model is not None else to_json_all(results))
    elif output_format == "sarif":
        from rfalint.report.sarif import to_sarif
        _out().write(to_sarif(results))
    elif output_format == "github":
        from rfalint.report.github import to_github
        _out().write(to_github(results))
    else:
        from rfalint.report.stages import render_stages
        from rfalint.report.text import render_text
        console = _console()
        for i, result in enumerate(results):
            if i:
                console.print()
            render_text(result, console, all_nodes=all_nodes, columns=extra)
            if stages:
                render_stages(result.analysis, console)
    if suppressed:
        print(f"rfalint: {suppressed} findings accepted by the baseline {baseline} are not shown",
              file=sys.stderr)
    raise typer.Exit(1 if any(r.failed(settings.fail_on) for r in results) else 0)


@app.command("sweep")
@_user_prints_to_stderr
def sweep_command(
    model: str = typer.Argument(..., help="file.py[:name], pkg.module:name or spec.yaml"),
    res: Optional[str] = typer.Option(
        None, "--res", "-r",
        help="Resolutions: START:STOP (step START), START:STOP:STEP, START:STOP:xFACTOR or "
             "N,N,... (each size on every spatial axis)."),
    in_channels: Optional[int] = IN_CHANNELS,
    arg: Optional[List[str]] = ARGS,
    object_size: Optional[str] = OBJECT_SIZE,
    output_format: str = typer.Option("text", "--format", "-f", help="text or json."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", metavar="FILE",
        help="Draw tail share and coverage against resolution (.png, .svg, .pdf; "
             "rfalint\\[plot])."),
    config: Optional[Path] = CONFIG,
    debug: bool = DEBUG,
) -> None:
    """Check MODEL at many resolutions: b_min, tail share, coverage, and the productive range.

    Custom layers declared in the config's [[modules]] are analysed as declared."""
    if output_format not in ("text", "json"):
        raise UsageError(f"--format must be text or json, got {output_format!r}")
    if res is None:
        raise UsageError("--res is required (for example --res 16:1024:x2 or --res 32,64,224)")
    from rfalint.report.sweep import render_sweep, sweep_json
    from rfalint.sweep import parse_resolutions, sweep
    sizes = parse_resolutions(res)
    objects = parse_object_sizes(object_size) if object_size is not None else None
    if plot is not None:
        from rfalint.visual import check_plot_path, save_sweep_plot
        check_plot_path(plot)
    registry = load_settings(config).registry()
    loaded = load_model(model, parse_args(arg))
    _, result = run_at_input(  # C is corrected on the sweep's own captures, if need be
        lambda shape: sweep(loaded.model, shape[0], len(shape) - 1, sizes, model, objects,
                            registry),
        loaded.model, (sizes[0],), in_channels)
    if plot is not None:
        refuse_inputs(plot, [loaded.source], "plot")
        save_sweep_plot(result, plot)
    if output_format == "json":
        _out().write(sweep_json(result))
    else:
        render_sweep(result, _console())


def _columns(text: Optional[str]) -> Optional[tuple[str, ...]]:
    if text is None:
        return None
    from rfalint.report.text import EXTRA_COLUMNS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    wrong = [n for n in names if n not in EXTRA_COLUMNS]
    if wrong or not names:
        raise UsageError(f"--columns takes {', '.join(EXTRA_COLUMNS)} (comma-separated), "
                         f"got {text!r}")
    return names


@app.command("graph")
@_user_prints_to_stderr
def graph_command(
    model: str = typer.Argument(..., help="file.py[:name], pkg.module:name or spec.yaml"),
    res: Optional[str] = RES,
    in_channels: Optional[int] = IN_CHANNELS,
    arg: Optional[List[str]] = ARGS,
    output_format: str = typer.Option("dot", "--format", "-f", help="dot or mermaid."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE",
                                          help="Write to FILE instead of standard output."),
    all_nodes: bool = typer.Option(False, "--all-nodes",
                                   help="Show activations, norms and reshapes as nodes too."),
    config: Optional[Path] = CONFIG,
    debug: bool = DEBUG,
) -> None:
    """Write the layer graph as Graphviz DOT or Mermaid text, coloured by layer status.

    Red: unproductive tail, orange: critical, grey: head. No Graphviz binary is needed.
    """
    from rfalint.visual import FORMATS as DIAGRAMS
    if output_format not in DIAGRAMS:
        raise UsageError(f"--format must be one of {', '.join(DIAGRAMS)}, got {output_format!r}")
    settings = load_settings(config).override(model=model, res=res, args=arg)
    [result] = check_models(settings, in_channels, cost=False)
    text = DIAGRAMS[output_format](result.analysis, all_nodes=all_nodes)
    if output is None:
        _out().write(text)
    else:
        refuse_inputs(output, [settings.path, result.source], "output")
        write_atomic(output, text)


def _floats(option: str, text: Optional[str]) -> Optional[List[float]]:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{option} expects comma-separated numbers, got {text!r}") from None


@app.command("saturation")
@_user_prints_to_stderr
def saturation_command(
    model: str = typer.Argument(..., help="file.py[:name], pkg.module:name or spec.yaml"),
    data: str = typer.Option(..., "--data", "-d",
                             help="Loader factory (file.py:NAME or pkg.module:NAME returning a "
                                  "DataLoader or iterable of batches), image folder, "
                                  ".npy/.npz/.pt file (file.npz:KEY picks an array) or "
                                  "'random' (smoke test only)."),
    res: Optional[str] = RES,
    in_channels: Optional[int] = IN_CHANNELS,
    arg: Optional[List[str]] = ARGS,
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", metavar="FILE",
                                           help="Trained state dict (torch.save)."),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Samples per forward pass."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", "-n",
                                              help="Use at most this many samples."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    layers: str = typer.Option("all", "--layers",
                               help="all (every conv/linear layer) or main-path (the convs of "
                                    "the RF main path); s_mu depends on the set."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j",
                                          help="Loader processes for image folders and tensor "
                                               "files \\[default: image folders one per CPU "
                                               "less one, at most 8; tensor files 0]."),
    delta: str = typer.Option("0.99", "--delta",
                              help="Share of the variance the top-k directions must explain."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Image folders: per-channel mean "
                                       "to subtract after scaling to [0, 1], e.g. "
                                       "0.485,0.456,0.406."),
    std: Optional[str] = typer.Option(None, "--std", help="Image folders: per-channel std."),
    output_format: str = typer.Option("text", "--format", "-f", help="text or json."),
    debug: bool = DEBUG,
) -> None:
    """Measure layer saturation on data: saturation tail vs RF tail, and width advice."""
    from rfalint import saturation  # imported by the command that needs it: `check` stays light
    if output_format not in ("text", "json"):
        raise UsageError(f"--format must be text or json, got {output_format!r}")
    try:
        delta_value = float(delta)
    except ValueError:
        raise UsageError(f"--delta must be a number in (0, 1], got {delta!r}") from None
    loaded, shape = load_for_check(model, res, in_channels, arg)
    source = saturation.open_source(data, shape, max_samples, _floats("--mean", mean),
                                    _floats("--std", std))
    result = saturation.run_saturation(
        loaded.model, shape, source, name=model, delta=delta_value, batch_size=batch_size,
        device=device, weights=weights, layers=layers, workers=workers,
        progress=output_format == "text" and sys.stderr.isatty(),
        command_for=lambda f: saturation.fix_command(model, res, f, in_channels, arg or ()))
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return
    if output_format == "json":
        _out().write(saturation.to_json(result))
    else:
        saturation.render_text(result, _console())


@app.command("export")
@_user_prints_to_stderr
def export_command(
    model: str = typer.Argument(..., help="file.py[:name], pkg.module:name or spec.yaml"),
    res: Optional[str] = RES,
    in_channels: Optional[int] = IN_CHANNELS,
    arg: Optional[List[str]] = ARGS,
    output: str = typer.Option("-", "--output", "-o", metavar="FILE",
                               help="Spec file to write; '-' is standard output."),
    force: bool = typer.Option(False, "--force", help="Overwrite FILE if it exists."),
    config: Optional[Path] = CONFIG,
    debug: bool = DEBUG,
) -> None:
    """Write MODEL's captured graph as a YAML spec, verified to rebuild the same model.

    Without --res the input size comes from the config's res, a spec's input, or the
    model's in_size / input_size / default_cfg['input_size'].
    """
    from rfalint import spec  # imported by the command that needs it: `check` stays light
    path = None if output == "-" else Path(output)
    settings = load_settings(config).override(model=model, res=res, args=arg)
    res = settings.models[0].res
    loaded = load_model(model, parse_args(arg))
    resolution = parse_resolution(res) if res else declared_resolution(loaded)
    if resolution is None:
        raise UsageError(NO_INPUT_SIZE, options=True)
    if path is not None:
        check_writable(path, "output", [loaded.source], force)
    _, text = run_at_input(  # C is corrected on the export's own capture, if need be
        lambda shape: spec.export_yaml(loaded.model, shape, spec.name_for(model),
                                       _origin(model, arg)),
        loaded.model, resolution, in_channels)
    if path is None:
        _out().write(text)
    else:
        write_atomic(path, text)


def _origin(model: str, args: Optional[List[str]]) -> str:
    """MODEL and its --arg options, as a written file's header names its source."""
    return " ".join([model, *(f"--arg {a}" for a in args or ())])


@app.command("fix")
@_user_prints_to_stderr
def fix_command(
    model: str = typer.Argument(..., help="file.py[:name], pkg.module:name or spec.yaml"),
    res: Optional[str] = RES,
    in_channels: Optional[int] = IN_CHANNELS,
    arg: Optional[List[str]] = ARGS,
    strategy: str = typer.Option(..., "--strategy", "-s",
                                 help="truncate, remove-stem, rebalance, reposition, width or "
                                      "auto."),
    prefer: str = typer.Option("balanced", "--prefer",
                               help="auto: choose by params, macs or balanced."),
    factor: Optional[float] = typer.Option(None, "--factor",
                                           help="width: scale every conv/linear width by F."),
    theta: float = typer.Option(0.0, "--theta",
                                help="rebalance: the dIF threshold of the IF organizer."),
    max_macs_ratio: Optional[float] = typer.Option(
        None, "--max-macs-ratio",
        help="reposition: at most this many times the model's MACs."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE",
        help="Write the result to FILE ('-': standard output) \\[default: print tables only]."),
    emit: str = typer.Option("yaml", "--emit", help="yaml (a spec) or python (nn.Module source)."),
    weights: Optional[Path] = typer.Option(None, "--weights", metavar="FILE",
                                           help="Trained state dict of MODEL (torch.save)."),
    save_weights: Optional[Path] = typer.Option(
        None, "--save-weights", metavar="FILE",
        help="Write the new model's state dict: surviving layers keep --weights."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    object_size: Optional[str] = OBJECT_SIZE,
    debug: bool = DEBUG,
) -> None:
    """Rewrite MODEL without its unproductive tail (or rescale its width), verified."""
    from rfalint import fix, spec  # imported by the command that needs it: `check` stays light
    sizes = parse_object_sizes(object_size) if object_size is not None else None
    loaded, shape = load_for_check(model, res, in_channels, arg)
    outputs = fix.Outputs(None if output in (None, "-") else Path(output), save_weights, emit,
                          _origin(model, arg), force, (loaded.source,))
    result = fix.fix(loaded.model, shape, strategy, spec.name_for(model), prefer, factor,
                     sizes, weights, outputs, theta, max_macs_ratio)
    console = _console(stderr=output == "-")
    if result.rewrite is None:
        against = f" against object size {object_size} px" if sizes else ""
        why = result.note or f"{model} has no unproductive layer at {res} px{against}"
        console.print(f"nothing to fix: {why}")
        raise typer.Exit(0)
    fix.render_fix(result, console)
    if result.moved is not None:
        console.print(f"weights: {result.moved.copied} tensors copied from {weights}, "
                      f"{result.moved.fresh} freshly initialised (new or resized layers)")
    if output == "-":
        _out().write(result.text(emit, outputs.origin))
    elif output is None:
        console.print("verified; nothing written (pass -o FILE to write the result)")
    for target in result.written:
        console.print(f"wrote {target}")


@app.command("rules")
def list_rules() -> None:
    """List every rule with its code, severity and summary."""
    from rich.table import Table
    table = Table(header_style="bold")
    for column in ("code", "name", "severity", "summary"):
        table.add_column(column)
    for rule in RULES:
        table.add_row(rule.code, rule.name, rule.severity.value, rule.summary)
    _console().print(table)


@app.command("rule")
def explain_rule(code: str = typer.Argument(..., help="Rule code (RFA101) or name."),
                 debug: bool = DEBUG) -> None:
    """Explain one rule: what it detects, why, what to do, and its VALID/INVALID examples."""
    from rich.text import Text
    rule = get_rule(code)
    console = _console()
    console.print(f"[bold]{rule.code} {rule.name}[/bold] ({rule.severity.value})\n")
    console.print(rule.summary + ".\n")
    console.print(rule.explanation)
    if rule.remedy:
        console.print(f"\n[bold]Remedy:[/bold] {rule.remedy}")
    for kind, examples in (("VALID", rule.valid), ("INVALID", rule.invalid)):
        for example in examples:
            model = example.build()
            shape = "x".join(map(str, example.input_shape))
            console.print(f"\n[bold]{kind}[/bold] example, checked at input {shape}:")
            console.print(Text(repr(model)))
            found = rule.findings_of(model, example.input_shape)
            for finding in found:
                console.print(Text(f"  -> {finding.code} {finding.layer or '(model)'}: "
                                   f"{finding.message}"))
            if not found:
                console.print(f"  -> no {rule.code} finding")


@app.command()
def version() -> None:
    """Print the rfalint version."""
    print(rfalint.__version__)


def main() -> None:
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    run = {"debug": False}  # typer's context object: --debug sets it (_remember_debug)
    try:
        code = app(standalone_mode=False, obj=run)
    except typer.Abort:
        print("rfalint: aborted", file=sys.stderr)
        sys.exit(130)
    except RfalintError as exc:
        if run["debug"]:
            raise
        print(f"rfalint: error: {exc.render(flag)}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # click's usage errors (unknown option, missing argument): one line, as every error
            print(f"rfalint: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(2)
        if run["debug"]:
            raise
        print(f"rfalint: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)  # a bug in rfalint
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
