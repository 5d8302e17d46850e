# Tables and figures: one generic rule each; pdd/plan/outputs.py says what every output needs and who builds it.


rule jobs_per_output:
    """The jobs behind each requested output, for the cost table; written in the Snakemake process, since the
    list of every job's files would overrun the shell's limit on one command line (128 KiB) on the paper grid."""
    input:
        get_cost_files,
    output:
        paths.JOBS_PER_OUTPUT,
    log:
        f"{LOGS}/jobs_per_output.log",
    params:
        jobs=lambda w: jobs_per_output(config, cost_output()),
    run:
        write_json(output[0], params.jobs)
        write_json(log[0], {output: len(jobs) for output, jobs in params.jobs.items()})


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
