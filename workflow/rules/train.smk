rule train:
    """Train one ensemble (resumes after an interruption)."""
    input:
        data="results/data/{dataset}.json",
        start=get_train_start,
    output:
        model=f"{MODEL_DIR}/ensemble.pt",
        log=f"{MODEL_DIR}/train_log.csv",
        cost=f"{MODEL_DIR}/cost.json",
    log:
        "results/logs/train/{dataset}_{arch}_K{K}_{method}_seed{seed}.log",
    benchmark:
        registry.benchmark("train", f"{MODEL_DIR}/ensemble.pt")
    conda:
        "../../envs/pdd.yaml"
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=24 * 60,
        mem_mb=16000,
    params:
        args=get_train_params,
        throughput=get_train_throughput,
        data_root=config["data_root"],
        device=config["device"],
        workers=config["training"]["workers"],
        code=CODE["train"],
    shell:
        "pdd train --dataset {wildcards.dataset} --arch {wildcards.arch} --members {wildcards.K}"
        " --seed {wildcards.seed} {params.args} {params.throughput}"
        " --data-root {params.data_root} --device {params.device} --threads {threads} --workers {params.workers}"
        " --out {output.model} --log {output.log} --cost {output.cost} > {log} 2>&1"


rule time_steps:
    """Time every method's training step interleaved in one process (the timing table)."""
    input:
        "results/data/{dataset}.json",
    output:
        registry.TIMING,
    log:
        f"{LOGS}/time_steps/{{dataset}}_{{arch}}_K{{K}}_seed{{seed}}.log",
    benchmark:
        registry.benchmark("time_steps", registry.TIMING)
    conda:
        "../../envs/pdd.yaml"
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=60,
        mem_mb=16000,
    params:
        args=get_timing_args,
        data_root=config["data_root"],
        device=config["device"],
        code=CODE["time_steps"],
    shell:
        "pdd time-steps --dataset {wildcards.dataset} --arch {wildcards.arch} --members {wildcards.K}"
        " --seed {wildcards.seed} {params.args} --data-root {params.data_root} --device {params.device}"
        " --threads {threads} --out {output} > {log} 2>&1"
