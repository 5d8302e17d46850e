def attack_args(params):
    """CLI flags of the attack protocol (config.evaluation) and the attack's parameters."""
    e = config["evaluation"]
    flags = (f"--batch-size {e['batch_size']} --seed {e['seed']} --steps {e['steps']}"
             f" --jsma-theta {e['jsma_theta']} --cw-confidence {e['cw']['confidence']}"
             f" --cw-learning-rate {e['cw']['learning_rate']} --cw-max-iter {e['cw']['max_iter']}"
             f" --cw-binary-search-steps {e['cw']['binary_search_steps']}")
    if e["num_images"]:
        flags += f" --num-images {e['num_images']}"
    return flags + "".join(f" --param {p}" for p in params)


rule whitebox:
    input:
        MODEL_DIR + "/ensemble.pt",
    output:
        EVAL_DIR + "/{suite}/{attack}.json",
    params:
        args=lambda w: attack_args([] if w.attack == "none" else suite_attacks(w.suite, w.dataset)[w.attack]),
        data_root=config["data_root"],
        device=config["device"],
        version=VERSION,
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=12 * 60,
        mem_mb=16000,
    log:
        LOGS + "/whitebox/{dataset}_{arch}_K{K}_{method}_seed{seed}_{suite}_{attack}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd attack --model {input} --attack {wildcards.attack} {params.args} --data-root {params.data_root}"
        " --device {params.device} --threads {threads} --out {output} > {log} 2>&1"


rule transfer:
    input:
        surrogate=lambda w: surrogate(w.threat, w.dataset, w.K, w.method, w.seed),
        target=MODEL_DIR + "/ensemble.pt",
    output:
        EVAL_DIR + "/{threat}/{attack}.json",
    params:
        args=lambda w: attack_args(OUTPUTS["table4_blackbox"]["attacks"][w.attack]),
        data_root=config["data_root"],
        device=config["device"],
        version=VERSION,
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=12 * 60,
        mem_mb=16000,
    log:
        LOGS + "/transfer/{dataset}_{arch}_K{K}_{method}_seed{seed}_{threat}_{attack}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd transfer --surrogate {input.surrogate} --target {input.target} --threat {wildcards.threat}"
        " --attack {wildcards.attack} {params.args} --data-root {params.data_root} --device {params.device}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule diversity:
    input:
        MODEL_DIR + "/ensemble.pt",
    output:
        json=EVAL_DIR + "/diversity/entropy.json",
        csv=EVAL_DIR + "/diversity/per_image.csv",
    params:
        num_images=lambda w: f"--num-images {n}" if (n := config["diversity"]["num_images"]) else "",
        seed=config["evaluation"]["seed"],
        data_root=config["data_root"],
        device=config["device"],
        version=VERSION,
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=2 * 60,
        mem_mb=16000,
    log:
        LOGS + "/diversity/{dataset}_{arch}_K{K}_{method}_seed{seed}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd diversity --model {input} {params.num_images} --seed {params.seed} --data-root {params.data_root}"
        " --device {params.device} --threads {threads} --out-json {output.json} --out-csv {output.csv} > {log} 2>&1"


def strong_args(dataset):
    """CLI flags of the strong evaluation (config.strong_evaluation) for one dataset's ensembles."""
    s, d = config["strong_evaluation"], config["strong_evaluation"]["diagnostics"]
    flags = [f"--eps {eps}" for eps in s["eps"][dataset]]
    flags += [f"--apgd-iterations {s['apgd']['iterations']}", f"--apgd-restarts {s['apgd']['restarts']}"]
    flags += [f"--pgd-steps {n}" for n in s["pgd"]["steps"]] + [f"--pgd-restarts {s['pgd']['restarts']}"]
    flags += [f"--transfer-steps {s['transfer_steps']}", f"--diagnostic-eps {d['eps']}",
              f"--diagnostic-max-accuracy {d['max_accuracy_pct']}", f"--unbounded-eps {d['unbounded_eps']}",
              f"--diagnostic-steps {d['steps']}", f"--noise-images {d['noise_images']}",
              f"--batch-size {s['batch_size']}", f"--seed {config['evaluation']['seed']}"]
    if s["num_images"]:
        flags.append(f"--num-images {s['num_images']}")
    return " ".join(flags)


rule strong:
    input:
        model=f"{MODEL_DIR}/ensemble.pt",
        surrogate=lambda w: surrogate("blackbox_oblivious", w.dataset, w.K, w.method, w.seed),
    output:
        f"{EVAL_DIR}/strong/evaluation.json",
    params:
        args=lambda w: strong_args(w.dataset),
        data_root=config["data_root"],
        device=config["device"],
        version=VERSION,
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=12 * 60,
        mem_mb=16000,
    log:
        "results/logs/strong/{dataset}_{arch}_K{K}_{method}_seed{seed}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd strong --model {input.model} --surrogate {input.surrogate} {params.args} --data-root {params.data_root}"
        " --device {params.device} --threads {threads} --out {output} > {log} 2>&1"
