rule train:
    """Train one ensemble (resumes after an interruption)."""
    input:
        data="results/data/{dataset}.json",
        start=get_train_start,
    output:
        model=f"{MODEL_DIR}/ensemble.pt",
        log=f"{MODEL_DIR}/train_log.csv",
        cost=f"{MODEL_DIR}/cost.json",
    params:
        args=get_train_params,
        data_root=config["data_root"],
        device=config["device"],
        workers=config["training"]["workers"],
        code=CODE["train"],
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=24 * 60,
        mem_mb=16000,
    benchmark:
        registry.benchmark("train", f"{MODEL_DIR}/ensemble.pt"),
    log:
        "results/logs/train/{dataset}_{arch}_K{K}_{method}_seed{seed}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd train --dataset {wildcards.dataset} --arch {wildcards.arch} --members {wildcards.K}"
        " --seed {wildcards.seed} {params.args}"
        " --data-root {params.data_root} --device {params.device} --threads {threads} --workers {params.workers}"
        " --out {output.model} --log {output.log} --cost {output.cost} > {log} 2>&1"


rule time_steps:
    """Time every method's training step interleaved in one process (the timing table)."""
    input:
        "results/data/{dataset}.json",
    output:
        registry.TIMING,
    params:
        args=get_timing_args,
        data_root=config["data_root"],
        device=config["device"],
        code=CODE["time_steps"],
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=60,
        mem_mb=16000,
    benchmark:
        registry.benchmark("time_steps", registry.TIMING),
    log:
        f"{LOGS}/time_steps/{{dataset}}_{{arch}}_K{{K}}_seed{{seed}}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd time-steps --dataset {wildcards.dataset} --arch {wildcards.arch} --members {wildcards.K}"
        " --seed {wildcards.seed} {params.args} --data-root {params.data_root} --device {params.device}"
        " --threads {threads} --out {output} > {log} 2>&1"
