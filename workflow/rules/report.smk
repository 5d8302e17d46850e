STRONG_TABLE = "table_strong_evaluation"
STRONG_FIGURE = "figure_strong_steps"  # drawn whenever the strong table is requested


def table_inputs(name):
    """Result files of a table: per defended ensemble, clean accuracy plus the table's attacks."""
    files = []
    for dataset, k, method, seed in grid(name):
        def result(kind, file):
            return evaluation(kind, dataset, k, method, seed, file)

        if name == "timing":
            files.append(model(dataset, k, method, seed).replace("ensemble.pt", "train_log.csv"))
        elif name == STRONG_TABLE:  # the strong evaluation beside the paper protocol's PGD (white-box suite)
            files += [result("strong", "evaluation.json"), result("whitebox", "pgd.json")]
        elif name == "table1_entropy":
            files.append(result("diversity", "entropy.json"))
        elif name == "table4_blackbox":
            files.append(result("whitebox", "none.json"))
            for threat in ("blackbox_oblivious", "blackbox_adaptive"):
                files += [result(threat, f"{a}.json") for a in OUTPUTS[name]["attacks"]]
        else:
            suite = name if "attacks" in OUTPUTS[name] else "whitebox"
            clean = [] if name == "table5_ablation" else [result("whitebox", "none.json")]
            files += clean + [result(suite, f"{a}.json") for a in suite_attacks(suite, dataset)]
    return files


rule table:
    input:
        results=lambda w: table_inputs(w.name),
        paper=PAPER_RESULTS,
    output:
        csv=report(TABLES + "/{name}.csv", category="Tables", subcategory="{name}", caption="../report/table.rst"),
        md=report(TABLES + "/{name}.md", category="Tables", subcategory="{name}", caption="../report/table.rst"),
    params:
        references=lambda w: references(w.name),
        version=VERSION,
    log:
        LOGS + "/table/{name}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd table --name {wildcards.name} --paper {input.paper} {params.references}"
        " --out-csv {output.csv} --out-md {output.md} {input.results} > {log} 2>&1"


def figure_spec(name):
    """An output's config entry; the strong figure follows the strong table's."""
    return OUTPUTS[STRONG_TABLE] if name == STRONG_FIGURE else OUTPUTS[name]


def figure_inputs(name):
    if name == STRONG_FIGURE:
        return [evaluation("strong", *key, "evaluation.json") for key in grid(STRONG_TABLE)]
    if name == "figure4_pgd_strength":
        return [evaluation(name, *key, f"{a}.json") for key in grid(name) for a in OUTPUTS[name]["attacks"]]
    return [evaluation("diversity", *key, "per_image.csv") for key in grid(name)]


rule figure:
    input:
        lambda w: figure_inputs(w.name),
    output:
        report(FIGURES + "/{name}.png", category="Figures", subcategory="{name}", caption="../report/figure.rst"),
    params:
        methods=lambda w: " ".join(f"--method {m}" for m in figure_spec(w.name)["methods"]),
        num_images=lambda w: f"--num-images {n}" if (n := figure_spec(w.name).get("num_images")) else "",
        version=VERSION,
    log:
        LOGS + "/figure/{name}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd figure --name {wildcards.name} {params.methods} {params.num_images} --out {output} {input} > {log} 2>&1"


rule all_tables:
    input:
        expand(TABLES + "/{name}.{ext}", name=list(config["tables"]), ext=["csv", "md"]),


rule all_figures:
    input:
        expand(FIGURES + "/{name}.png",
               name=list(config.get("figures", {})) + ([STRONG_FIGURE] if STRONG_TABLE in config["tables"] else [])),
