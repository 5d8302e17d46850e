rule prepare_data:
    output:
        RESULTS + "/data/{dataset}.json",
    params:
        root=config["data_root"],
    log:
        LOGS + "/prepare_data/{dataset}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd prepare-data --dataset {wildcards.dataset} --root {params.root} --out {output} > {log} 2>&1"
