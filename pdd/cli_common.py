"""What every `pdd` command line shares, without torch: the option types (registry names, checked numbers),
the output checks, and the group that turns every error into one line (`pdd.cli`, `pdd.report_cli`)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import click

from pdd.validation import Bound, field_bound

Decorator = Callable[[Callable], Callable]


class Registry(click.Choice):
    """A choice among a registry's names (listed in --help); a bad name is 'unknown <what> ...; expected one
    of ...'."""

    def __init__(self, names: Iterable[str], what: str):
        super().__init__(list(names))
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.choices:
            return value
        self.fail(f"unknown {self.what} {value!r}; expected one of {', '.join(map(str, self.choices))}", param, ctx)


class Checked(click.ParamType):
    """A number inside a `pdd.validation.Bound` (finite: NaN and infinities are refused by name); the same
    table the dataclasses, the API and the config checks use."""

    def __init__(self, bound: Bound):
        self.bound = bound
        self.name = "integer" if bound.integer else "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            try:
                value = int(value) if self.bound.integer else float(value)
            except ValueError:
                self.fail(f"must be {self.bound.describe()}, got {value!r}", param, ctx)
        problem = self.bound.problem(value)
        if problem:
            self.fail(problem, param, ctx)
        return value


def checked(name: str) -> Checked:
    """The click type of the numeric value `name` (a dataclass field or one of `VALUE_BOUNDS`)."""
    return Checked(field_bound(name))


FINITE = Checked(Bound())


def _options(*options: Decorator) -> Decorator:
    """Several options as one decorator, in the order given (as --help lists them)."""
    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _out_option(help: str, required: bool = True) -> Decorator:
    """--out: the file a command writes (atomically, at the end)."""
    return click.option("--out", required=required, type=click.Path(dir_okay=False), help=help)


def _outputs(**paths: str | None) -> None:
    """Before any work: the output files a command will write (keyword: option name, '_' for '-') are
    distinct, not folders, and writable (in their folder, or in the nearest existing folder above it, where it
    will be created); temporaries that killed runs left beside them are removed."""
    from pdd.io import remove_stale_temporaries

    given = {f"--{k.replace('_', '-')}": os.path.abspath(v) for k, v in paths.items() if v}
    seen: dict[str, str] = {}
    for option, path in given.items():
        if path in seen:
            raise click.UsageError(f"{seen[path]} and {option} are the same file {path}: give each output its own "
                                   "path")
        seen[path] = option
        if os.path.isdir(path):
            raise click.BadParameter(f"{path} is a folder; give a file path", param_hint=f"'{option}'")
        folder = os.path.dirname(path)
        while not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise click.ClickException(f"{option} {path}: cannot write in {folder} (not a writable folder)")
        remove_stale_temporaries(path)


DEBUG_HINT = "PDD_DEBUG=1 (or pdd --debug ...) shows the traceback"


def _debugging() -> bool:
    """Whether tracebacks are wanted: PDD_DEBUG set (not '0') or `pdd --debug`."""
    return os.environ.get("PDD_DEBUG", "0") not in ("", "0") or _DEBUG["on"]


_DEBUG = {"on": False}


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


class Main(click.Group):
    """The `pdd` group: every error is one line `pdd: error: ...` on stderr, exit status 2 for a usage error and
    1 for a failure; with PDD_DEBUG=1 or --debug an unexpected error shows its traceback instead."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        _DEBUG["on"] = False
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:  # `pdd` alone: its help, as click shows it
            err.show()
            sys.exit(err.exit_code)
        except click.ClickException as err:
            if _debugging():
                traceback.print_exc()
            click.echo(f"pdd: error: {_one_line(err.format_message())}", err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("pdd: error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("pdd: error: interrupted", err=True)
            sys.exit(130)
        except Exception as err:
            if _debugging():
                raise
            known = isinstance(err, (ValueError, OSError, RuntimeError)) and str(err)
            text = str(err) if known else f"{type(err).__name__}: {err}"
            click.echo(f"pdd: error: {_one_line(text)} ({DEBUG_HINT})", err=True)
            sys.exit(1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    _DEBUG["on"] = _DEBUG["on"] or value


def exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (Snakemake cancelling, SLURM's time limit) exits through Python, so that unfinished atomic writes
    remove their temporary files instead of leaving them beside the outputs."""
    sys.exit(128 + signum)


