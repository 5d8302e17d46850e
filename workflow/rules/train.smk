def train_params(w):
    """Every config value that determines the trained ensemble (a change reruns it)."""
    recipe, t = config["datasets"][w.dataset], config["training"]
    method, k = get_method(w.method), int(w.K)
    adv = config["adversarial_training"].get(method.adversarial or "", {})
    args = {
        "epochs": recipe["epochs"], "batch-size": t["batch_size"], "lr": t["lr"], "momentum": t["momentum"],
        "weight-decay": t["weight_decay"], "lr-min": t["lr_min"], "width": width(w.arch),
    }
    if method.pdd:
        args.update({"pdd-intervals": intervals_for(config, k), "pdd-alpha": config["pdd"]["alpha"],
                     "pdd-beta": config["pdd"]["beta"]})
    if method.deg:
        args["deg-lambda"] = config["deg"]["lambda"]
    if method.adp:
        args.update({"adp-alpha": config["adp"]["alpha"], "adp-beta": config["adp"]["beta"]})
    if method.adversarial:
        args.update({"adv-eps": adv["eps"], "adv-steps": adv.get("steps", 1)})
    flags = " ".join(f"--{key} {value}" for key, value in args.items())
    return flags + (" --augment" if recipe["augment"] else " --no-augment")


rule train:
    input:
        RESULTS + "/data/{dataset}.json",
    output:
        model=MODEL_DIR + "/ensemble.pt",
        log=MODEL_DIR + "/train_log.csv",
    params:
        args=train_params,
        data_root=config["data_root"],
        device=config["device"],
        workers=config["training"]["workers"],
        version=VERSION,
    threads: config["threads"]
    resources:
        gpu=1,
        runtime=24 * 60,
        mem_mb=16000,
    log:
        LOGS + "/train/{dataset}_{arch}_K{K}_{method}_seed{seed}.log",
    conda:
        "../../envs/pdd.yaml"
    shell:
        "pdd train --dataset {wildcards.dataset} --arch {wildcards.arch} --members {wildcards.K}"
        " --method {wildcards.method} --seed {wildcards.seed} {params.args}"
        " --data-root {params.data_root} --device {params.device} --threads {threads} --workers {params.workers}"
        " --out {output.model} --log {output.log} > {log} 2>&1"
