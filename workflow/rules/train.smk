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
        paths.benchmark("train", f"{MODEL_DIR}/ensemble.pt")
    conda:
        "../../envs/pdd.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        runtime=24 * 60,
        mem_mb=16000,
        # the throughput options: how a step runs, not its result, so not params (a change reruns nothing)
        throughput=RUNTIME["throughput"],
    params:
        args=get_train_params,
        data_root=RUNTIME["data_root"],
        device=RUNTIME["device"],
        workers=RUNTIME["workers"],
        code=get_train_code,
    shell:
        "pdd train {params.args} {resources.throughput} --data-root {params.data_root:q} --device {params.device:q}"
        " --threads {threads} --workers {params.workers} --out {output.model:q} --log {output.log:q} --cost {output.cost:q} > {log:q} 2>&1"


rule time_steps:
    """Time every method's training step interleaved in one process (the timing table)."""
    input:
        "results/data/{dataset}.json",
    output:
        paths.TIMING,
    log:
        f"{LOGS}/time_steps/{{dataset}}_{{arch}}_K{{K}}_seed{{seed}}.log",
    benchmark:
        paths.benchmark("time_steps", paths.TIMING)
    conda:
        "../../envs/pdd.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        runtime=60,
        mem_mb=16000,
    params:
        args=get_timing_args,
        data_root=RUNTIME["data_root"],
        device=RUNTIME["device"],
        code=get_timing_code,
    shell:
        "pdd time-steps --dataset {wildcards.dataset} --arch {wildcards.arch} --members {wildcards.K}"
        " --seed {wildcards.seed} {params.args} --data-root {params.data_root:q} --device {params.device:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"
