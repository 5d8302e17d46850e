def whitebox_inputs(table):
    """Result files of a white-box table: clean accuracy and every attack of the table, per model."""
    files = []
    for dataset, k, method, seed in grid(table):
        for attack in ["none", *table_attacks(table, dataset)]:
            files.append(evaluation("whitebox", dataset, k, method, seed, attack))
    return files


def blackbox_inputs(table):
    files = []
    for dataset, k, method, seed in grid(table):
        files.append(evaluation("whitebox", dataset, k, method, seed, "none"))
        for threat in ("blackbox_oblivious", "blackbox_adaptive"):
            files += [evaluation(threat, dataset, k, method, seed, a) for a in table_attacks(table, dataset)]
    return files


def table_inputs(name):
    if name == "timing":
        return [train_log(*key) for key in grid(name)]
    if name == "table4_blackbox":
        return blackbox_inputs(name)
    return whitebox_inputs(name)


def only_flags(name):
    """Keep just the table's own (attack, param) pairs when it lists them (Table 5)."""
    if name != "table5_ablation":
        return ""
    return " ".join(f"--only {a}:{p}" for a, ps in config["tables"][name]["attacks"].items() for p in ps)


rule table:
    input:
        results=lambda w: table_inputs(w.name),
        paper=PAPER_RESULTS,
    output:
        csv=report(TABLES + "/{name}.csv", category="Tables", subcategory="{name}", caption="../report/table.rst"),
        md=TABLES + "/{name}.md",
    params:
        references=lambda w: " ".join(references(w.name)),
        only=lambda w: only_flags(w.name),
        version=VERSION,
    log:
        LOGS + "/table/{name}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd table --name {wildcards.name} --paper {input.paper} {params.references} {params.only}"
        " --out-csv {output.csv} --out-md {output.md} {input.results} > {log} 2>&1"


rule all_tables:
    input:
        expand(TABLES + "/{name}.{ext}", name=list(config["tables"]), ext=["csv", "md"]),


rule all_figures:
    input:
        [],
