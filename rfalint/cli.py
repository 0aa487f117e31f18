"""The ``rfalint`` command line: a thin layer over the library API.

Exit codes follow ruff: 0 clean, 1 findings at or above ``--fail-on``, 2 usage, load or
model errors (one line on stderr; ``--debug`` shows the traceback).
"""

from __future__ import annotations

import sys
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

import rfalint
from rfalint import api
from rfalint.errors import RfalintError, UsageError
from rfalint.load import input_shape, load_model, parse_args, parse_resolution
from rfalint.report import render_text, to_json
from rfalint.rules import RULES, get_rule

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Receptive-field linter for CNNs: find layers that cannot use the input resolution.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = {"on": False}

DEBUG = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")
RES = typer.Option(None, "--res", "-r", help="Input resolution: N, HxW or DxHxW.")
IN_CHANNELS = typer.Option(None, "--in-channels",
                           help="Input channels [default: the first conv's, else 3].")
ARGS = typer.Option(None, "--arg", "-a", help="Factory keyword argument key=value (repeatable).")


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def load_for_check(target: str, res: Optional[str], in_channels: Optional[int],
                   args: Optional[List[str]]):
    """Load a target and work out its input shape; shared by every command taking MODEL."""
    if not res:
        raise UsageError("--res is required (for example --res 32 or --res 224x160)")
    resolution = parse_resolution(res)
    loaded = load_model(target, parse_args(args))
    return loaded, input_shape(loaded.model, resolution, in_channels)


@app.command()
def check(
    model: str = typer.Argument(..., help="file.py[:name], pkg.module:name or spec.yaml"),
    res: Optional[str] = RES,
    in_channels: Optional[int] = IN_CHANNELS,
    arg: Optional[List[str]] = ARGS,
    output_format: str = typer.Option("text", "--format", "-f", help="text or json."),
    fail_on: str = typer.Option("error", "--fail-on",
                                help="Exit 1 on findings at or above: error, warning, info, never."),
    select: Optional[List[str]] = typer.Option(None, "--select", help="Rule code prefixes to run."),
    ignore: Optional[List[str]] = typer.Option(None, "--ignore", help="Rule code prefixes to skip."),
    all_nodes: bool = typer.Option(False, "--all-nodes",
                                   help="Show every node, also activations and norms."),
    debug: bool = DEBUG,
) -> None:
    """Report per-layer receptive fields, the border layer, the tail and rule findings."""
    _debug["on"] = debug
    if fail_on not in api.FAIL_LEVELS:
        raise UsageError(f"--fail-on must be one of {', '.join(api.FAIL_LEVELS)}, got {fail_on!r}")
    if output_format not in ("text", "json"):
        raise UsageError(f"--format must be text or json, got {output_format!r}")
    loaded, shape = load_for_check(model, res, in_channels, arg)
    result = api.check(loaded.model, shape, name=model, select=select or ("RFA",),
                       ignore=ignore or (), source=loaded.source)
    if output_format == "json":
        sys.stdout.write(to_json(result))
    else:
        render_text(result, _console(), all_nodes=all_nodes)
    raise typer.Exit(1 if result.failed(fail_on) else 0)


@app.command("rules")
def list_rules() -> None:
    """List every rule with its code, severity and summary."""
    table = Table(header_style="bold")
    for column in ("code", "name", "severity", "summary"):
        table.add_column(column)
    for rule in RULES:
        table.add_row(rule.code, rule.name, rule.severity.value, rule.summary)
    _console().print(table)


@app.command("rule")
def explain_rule(code: str = typer.Argument(..., help="Rule code (RFA101) or name."),
                 debug: bool = DEBUG) -> None:
    """Explain one rule: what it detects, why it matters, and what to do."""
    _debug["on"] = debug
    rule = get_rule(code)
    console = _console()
    console.print(f"[bold]{rule.code} {rule.name}[/bold] ({rule.severity.value})\n")
    console.print(rule.summary + ".\n")
    console.print(rule.explanation)
    if rule.remedy:
        console.print(f"\n[bold]Remedy:[/bold] {rule.remedy}")


@app.command()
def version() -> None:
    """Print the rfalint version."""
    print(rfalint.__version__)


def main() -> None:
    try:
        app()
    except RfalintError as exc:
        if _debug["on"]:
            raise
        print(f"rfalint: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # a bug in rfalint: still one line unless --debug
        if _debug["on"]:
            raise
        print(f"rfalint: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        sys.exit(2)
