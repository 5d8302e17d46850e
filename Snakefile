# Reproduction of "Adversarial Defense by Diversified Simultaneous Training of Deep Ensembles".
# Targets: all_tables, all_figures, all. See README.md.

from snakemake.utils import min_version, validate

min_version("9.0")


# A --configfile given on the command line defines the run by itself; otherwise the paper's grid.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# Every schema problem at once, one line each (an unknown key names the closest valid one), before Snakemake's
# validate (which fills the schema's defaults but would report only the first problem, with the whole schema).
from pdd.plan.checks import schema_problems

_schema_problems = schema_problems(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
if _schema_problems:
    raise ValueError("invalid config:\n  " + "\n  ".join(_schema_problems))
validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/model_cards.smk"


localrules:
    all,
    all_tables,
    all_figures,
    table,
    figure,
    jobs_per_output,


rule all:
    """Every table and figure the config requests."""
    input:
        rules.all_tables.input,
        rules.all_figures.input,
        rules.all_model_cards.input,
