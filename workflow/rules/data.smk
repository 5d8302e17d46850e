# Dataset download / extraction: runs on the submitting host (cluster nodes are often offline).


localrules:
    prepare_data,


rule prepare_data:
    output:
        "results/data/{dataset}.json",
    log:
        "results/logs/prepare_data/{dataset}.log",
    benchmark:
        paths.benchmark("prepare_data", "results/data/{dataset}.json")
    conda:
        "../../envs/pdd.yaml"
    params:
        root=RUNTIME["data_root"],
        code=CODE["prepare_data"],
    shell:
        "pdd prepare-data --dataset {wildcards.dataset} --root {params.root:q} --out {output:q} > {log:q} 2>&1"
