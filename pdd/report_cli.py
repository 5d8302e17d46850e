"""`pdd table`, `pdd figure` and `pdd model-card` without torch: the reports read result files only, so the
console script (`pdd.launcher`) runs them from here, a second or more faster than through `pdd.cli` (which adds
the same commands to the full `pdd`)."""

from __future__ import annotations

import signal

import click

from pdd import __version__
from pdd.cli_common import (
    DEBUG_HINT,
    Decorator,
    Main,
    Registry,
    _options,
    _out_option,
    _outputs,
    _set_debug,
    checked,
    exit_on_sigterm,
)
from pdd.plan.outputs import OUTPUTS


def _output_options(kind: str) -> Decorator:
    """The options of `pdd table` / `pdd figure`: --name among the registry's outputs of `kind`, and the rest."""
    return _options(
        click.option("--name", required=True, type=Registry([n for n, o in OUTPUTS.items() if o.kind == kind], kind),
                     help=f"The {kind} to build (pdd.plan.outputs.OUTPUTS)."),
        click.option("--spec", default="{}", show_default=True,
                     help="The output's config entry as JSON (methods, datasets, reference, ...)."),
        click.option("--paper", "paper_csv", required=True, type=click.Path(exists=True, dir_okay=False),
                     help="The paper's numbers (config/paper_results.csv)."),
        click.option("--out", required=True, help="Output path without extension."),
        click.argument("inputs", nargs=-1, type=click.Path(exists=True, dir_okay=False)),
    )


@click.command()
@_output_options("table")
def table(name: str, spec: str, paper_csv: str, out: str, inputs: tuple[str, ...]) -> None:
    """Build a table from its input files.

    Writes OUT.csv, OUT.md and OUT.tex, as the workflow's `table` rule does.
    """
    _build_output("table", name, spec, paper_csv, out, inputs)


@click.command()
@_output_options("figure")
def figure(name: str, spec: str, paper_csv: str, out: str, inputs: tuple[str, ...]) -> None:
    """Draw a figure from its input files.

    Writes OUT.png and OUT.pdf, as the workflow's `figure` rule does.
    """
    _build_output("figure", name, spec, paper_csv, out, inputs)


@click.command("model-card")
@click.option("--evaluation", required=True, type=click.Path(exists=True, dir_okay=False),
              help="One ensemble's strong evaluation (the JSON `pdd strong` writes).")
@click.option("--eps", required=True, type=checked("strong_eps"), help="The budget the card reports.")
@click.option("--threat-model", required=True, type=click.Choice(["Linf", "L2"]),
              help="RobustBench's threat model, which must be the evaluation's norm.")
@click.option("--width", type=checked("width"), help="The members' width, named in the card.")
@_out_option("Card to write (RobustBench's model_info JSON).")
def model_card(evaluation: str, eps: float, threat_model: str, width: int | None, out: str) -> None:
    """Write a RobustBench-format model card.

    One strongly evaluated ensemble at one eps; prints the card's robust accuracy and reliability.
    """
    import json

    from pdd.reports.model_cards import write_card

    _outputs(out=out)
    info = write_card(evaluation, eps, threat_model, out, width)
    click.echo(json.dumps({"external": info["external"], "unreliable": info["unreliable"]}))


def _build_output(kind: str, name: str, spec: str, paper_csv: str, out: str, inputs: tuple[str, ...]) -> None:
    """Build registry output NAME of `kind` from its input files; a bad spec is a one-line error."""
    import json

    try:
        settings = {"name": name, **json.loads(spec)}
    except (json.JSONDecodeError, TypeError) as err:  # TypeError: JSON that is not an object
        raise click.BadParameter(f"not a JSON object: {err}", param_hint="'--spec'") from err
    if not inputs:
        raise click.UsageError(f"{name} needs its input files (the result JSON / CSV files of its jobs)")
    for path in inputs:
        _check_input(path)
    for suffix in OUTPUT_SUFFIXES[kind]:
        _outputs(out=f"{out}.{suffix}")
    try:
        OUTPUTS[name].run(list(inputs), settings, out, paper_csv)
    except (KeyError, IndexError, StopIteration, TypeError, ValueError) as err:  # inputs of another kind or layout
        what = f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)
        raise click.ClickException(f"cannot build {name} from its inputs ({what}); are they the outputs of the "
                                   f"jobs it reads (pdd.plan.outputs.OUTPUTS[{name!r}])? ({DEBUG_HINT})") from err
    click.echo(f"{name}: written under {out}.*", err=True)


OUTPUT_SUFFIXES = {"table": ("csv", "md", "tex"), "figure": ("png", "pdf")}


def _check_input(path: str) -> None:
    """A JSON or CSV input of `pdd table` / `pdd figure` is complete text (other inputs, e.g. checkpoints, are
    read by the builder): else one line naming it."""
    import json

    if not path.endswith((".json", ".csv")):
        return
    try:
        text = open(path, encoding="utf-8").read()
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not a text file", param_hint="'INPUTS'") from None
    if path.endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            raise click.BadParameter(f"{path} is not complete JSON ({err})", param_hint="'INPUTS'") from None


REPORTS = (table, figure, model_card)


@click.group(cls=Main)
@click.version_option(__version__)
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show the traceback of an unexpected error (as PDD_DEBUG=1 does).")
def main() -> None:
    """The report commands of `pdd` (`pdd.launcher` sends them here)."""
    signal.signal(signal.SIGTERM, exit_on_sigterm)


for command in REPORTS:
    main.add_command(command)
