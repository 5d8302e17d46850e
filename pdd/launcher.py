"""The `pdd` console script: `pdd`, `pdd --help` and `pdd --version` answered from a table, in a fraction of a second;
`pdd table`, `pdd figure` and `pdd model-card` go to `pdd.report_cli` (no torch); everything else goes to `pdd.cli`,
whose options need the registries and so torch (seconds to import).

`tests/test_validation.py` checks that this help is exactly `pdd.cli.main`'s, so the table cannot drift.
"""

from __future__ import annotations

import sys

# `pdd.cli.main`'s commands and their one-line summaries (the first line of each command's docstring).
COMMANDS = {
    "attack": "White-box attack on an ensemble's log(mean softmax).",
    "diversity": "Ambiguity entropy, discrimination and gradient angles.",
    "estimate": "The cost of a config's run before it starts.",
    "examples": "Figure 5's PGD examples of one test image.",
    "figure": "Draw a figure from its input files.",
    "gradcam": "Figure 1's Grad-CAM of each member of several ensembles.",
    "member-transfer": "Member-to-member transfer of PGD, DVERGE's measure.",
    "model-card": "Write a RobustBench-format model card.",
    "prepare-data": "Make a dataset loadable and verify it.",
    "strong": "Strong evaluation with gradient-masking checks.",
    "table": "Build a table from its input files.",
    "time-steps": "Seconds per training step of each method.",
    "train": "Train one ensemble.",
    "transfer": "Black-box attack: craft on a surrogate, score a target.",
}
HELP = """Reproduce 'Adversarial Defense by Diversified Simultaneous Training of Deep Ensembles'.

Every bad value, unusable model or unwritable output is one line `pdd: error: ...` before any work
(exit status 2 for usage, 1 for failures); PDD_DEBUG=1 or --debug shows a traceback.
"""
QUICK = ([], ["--help"], ["--version"])


def help_group():
    """A click group with `pdd.cli.main`'s name, help, options and command summaries, and no work behind them."""
    import click

    from pdd import __version__

    group = click.Group("pdd", help=HELP)
    click.version_option(__version__)(group)  # the options in pdd.cli.main's order
    click.option("--debug", is_flag=True, expose_value=False,
                 help="Show the traceback of an unexpected error (as PDD_DEBUG=1 does).")(group)
    for name, summary in COMMANDS.items():
        group.add_command(click.Command(name, short_help=summary))
    return group


REPORTS = ("table", "figure", "model-card")  # pdd.report_cli's commands: they need no torch


def main() -> None:
    """`pdd`: the quick answers here, the report commands through `pdd.report_cli.main` (no torch), the rest
    through `pdd.cli.main`."""
    if sys.argv[1:] in QUICK:
        help_group().main(prog_name="pdd")
    if sys.argv[1:2] and sys.argv[1] in REPORTS:
        from pdd.report_cli import main as reports

        reports(prog_name="pdd")
    from pdd.cli import main as cli

    cli(prog_name="pdd")


if __name__ == "__main__":
    main()
