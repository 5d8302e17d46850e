rule table:
    input:
        results=lambda w: table_inputs(w.name),
        paper=PAPER_RESULTS,
    output:
        csv=report(f"{TABLES}/{{name}}.csv", category="Tables", subcategory="{name}", caption="../report/table.rst"),
        md=report(f"{TABLES}/{{name}}.md", category="Tables", subcategory="{name}", caption="../report/table.rst"),
    params:
        references=lambda w: references(w.name),
        version=VERSION,
    log:
        f"{LOGS}/table/{{name}}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd table --name {wildcards.name} --paper {input.paper} {params.references}"
        " --out-csv {output.csv} --out-md {output.md} {input.results} > {log} 2>&1"


rule figure:
    input:
        lambda w: figure_inputs(w.name),
    output:
        report(f"{FIGURES}/{{name}}.png", category="Figures", subcategory="{name}", caption="../report/figure.rst"),
    params:
        methods=lambda w: " ".join(f"--method {m}" for m in figure_spec(w.name)["methods"]),
        num_images=lambda w: f"--num-images {n}" if (n := figure_spec(w.name).get("num_images")) else "",
        version=VERSION,
    log:
        f"{LOGS}/figure/{{name}}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd figure --name {wildcards.name} {params.methods} {params.num_images} --out {output} {input} > {log} 2>&1"


rule all_tables:
    input:
        expand(f"{TABLES}/{{name}}.{{ext}}", name=list(config["tables"]), ext=["csv", "md"]),


rule all_figures:
    input:
        expand(f"{FIGURES}/{{name}}.png",
               name=list(config.get("figures", {})) + ([STRONG_FIGURE] if STRONG_TABLE in config["tables"] else [])),
