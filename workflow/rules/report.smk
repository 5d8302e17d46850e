# Tables and figures: one generic rule each; pdd/plan/outputs.py says what every output needs and who builds it.


rule jobs_per_output:
    """The jobs behind each requested output, for the cost table: read from Snakemake's own DAG of this config's run
    (pdd.plan.dag) once every other output is built."""
    input:
        unpack(get_cost_outputs),
    output:
        paths.JOBS_PER_OUTPUT,
    log:
        f"{LOGS}/jobs_per_output.log",
    conda:
        "../../envs/pdd.yaml"
    params:
        args=get_cost_args,
        snakefile=os.path.relpath(workflow.main_snakefile),
        code=fingerprint("pdd.plan.dag"),
    shell:
        "python -m pdd.plan.dag --snakefile {params.snakefile:q} {params.args} --out {output:q} > {log:q} 2>&1"


rule table:
    """Build one table (CSV, Markdown, LaTeX) from its evaluations."""
    input:
        results=get_output_inputs,
        paper=PAPER_RESULTS,
    output:
        csv=report(f"{TABLES}/{{name}}.csv", category="Tables", subcategory="{name}", caption="../report/table.rst"),
        md=report(f"{TABLES}/{{name}}.md", category="Tables", subcategory="{name}", caption="../report/table.rst"),
        tex=f"{TABLES}/{{name}}.tex",
    log:
        f"{LOGS}/table/{{name}}.log",
    conda:
        "../../envs/pdd.yaml"
    params:
        spec=get_output_spec,
        out=lambda w: f"{TABLES}/{w.name}",
        code=get_output_code,
        title=lambda w: registry.OUTPUTS[w.name].title,
        caption=lambda w: registry.OUTPUTS[w.name].caption,
    shell:
        "pdd table --name {wildcards.name} --spec {params.spec} --paper {input.paper:q}"
        " --out {params.out:q} {input.results:q} > {log:q} 2>&1"


rule figure:
    """Draw one figure (PNG, PDF) from its evaluations."""
    input:
        results=get_output_inputs,
        paper=PAPER_RESULTS,
    output:
        png=report(f"{FIGURES}/{{name}}.png", category="Figures", subcategory="{name}", caption="../report/figure.rst"),
        pdf=f"{FIGURES}/{{name}}.pdf",
    log:
        f"{LOGS}/figure/{{name}}.log",
    conda:
        "../../envs/pdd.yaml"
    params:
        spec=get_output_spec,
        out=lambda w: f"{FIGURES}/{w.name}",
        code=get_output_code,
        title=lambda w: registry.OUTPUTS[w.name].title,
        caption=lambda w: registry.OUTPUTS[w.name].caption,
    shell:
        "pdd figure --name {wildcards.name} --spec {params.spec} --paper {input.paper:q}"
        " --out {params.out:q} {input.results:q} > {log:q} 2>&1"


rule all_tables:
    """Every table the config requests."""
    input:
        registry.targets(config, "table"),


rule all_figures:
    """Every figure the config requests."""
    input:
        registry.targets(config, "figure"),
