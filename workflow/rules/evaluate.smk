# One job per model and folder (attack suite or threat) runs that folder's attacks on one loaded model and writes
# one result file per attack (pdd.plan.jobs.attack_jobs): one rule per set of attacks, its `model` wildcard
# limited to the models that need exactly that set.
for group in ATTACK_JOBS:

    rule:
        name:
            group.name
        input:
            unpack(attack_job_inputs(group)),
        output:
            [f"results/eval/{{model}}/{group.folder}/{attack}.json" for attack in group.attacks],
        log:
            f"{LOGS}/{group.kind}/{{model}}/{group.folder}/{group.stem}.log",
        benchmark:
            paths.benchmark(group.kind, f"results/eval/{{model}}/{group.folder}/{group.stem}.json")
        wildcard_constraints:
            model=group.model_pattern,
        conda:
            "../../envs/pdd.yaml"
        threads: RUNTIME["threads"]
        resources:
            gpu=1,
            runtime=12 * 60,
            mem_mb=16000,
        params:
            command=attack_job_command(group),
            args=attack_job_args(group),
            outs=lambda w, output: plan.quoted(a for path in output for a in ("--out", path)),
            data_root=RUNTIME["data_root"],
            device=RUNTIME["device"],
            code=CODE["attack"],
        shell:
            "pdd {params.command} {params.args} --data-root {params.data_root:q} --device {params.device:q}"
            " --threads {threads} {params.outs} > {log:q} 2>&1"


rule diversity:
    input:
        get_model_input,
    output:
        json=f"{EVAL_DIR}/diversity/entropy.json",
        csv=f"{EVAL_DIR}/diversity/per_image.csv",
    log:
        f"{LOGS}/diversity/{{dataset}}_{{arch}}_K{{K}}_{{method}}_seed{{seed}}.log",
    benchmark:
        paths.benchmark("diversity", f"{EVAL_DIR}/diversity/per_image.csv")
    conda:
        "../../envs/pdd.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        runtime=2 * 60,
        mem_mb=16000,
    params:
        args=get_diversity_args,
        model=get_model_args,
        data_root=RUNTIME["data_root"],
        device=RUNTIME["device"],
        code=CODE["diversity"],
    shell:
        "pdd diversity {params.model} {params.args} --data-root {params.data_root:q}"
        " --device {params.device:q} --threads {threads} --out-json {output.json:q} --out-csv {output.csv:q} > {log:q} 2>&1"


rule strong:
    input:
        model=get_model_input,
        surrogate=lambda w: get_surrogate("blackbox_oblivious", w.dataset, w.K, w.method, w.seed),
    output:
        f"{EVAL_DIR}/{{strong}}/evaluation.json",
    log:
        f"{LOGS}/{{strong}}/{{dataset}}_{{arch}}_K{{K}}_{{method}}_seed{{seed}}.log",
    benchmark:
        paths.benchmark("strong", f"{EVAL_DIR}/{{strong}}/evaluation.json")
    wildcard_constraints:
        strong="strong|strong_l2",
    conda:
        "../../envs/pdd.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        runtime=12 * 60,
        mem_mb=16000,
    params:
        args=get_strong_args,
        model=get_model_args,
        data_root=RUNTIME["data_root"],
        device=RUNTIME["device"],
        code=CODE["strong"],
    shell:
        "pdd strong {params.model} --surrogate {input.surrogate:q} {params.args} --data-root {params.data_root:q}"
        " --device {params.device:q} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule member_transfer:
    """PGD crafted on each member of one ensemble, scored on every member (figure_member_transfer)."""
    input:
        f"{MODEL_DIR}/ensemble.pt",
    output:
        f"{EVAL_DIR}/member_transfer/pgd.json",
    log:
        f"{LOGS}/member_transfer/{{dataset}}_{{arch}}_K{{K}}_{{method}}_seed{{seed}}.log",
    benchmark:
        paths.benchmark("member_transfer", f"{EVAL_DIR}/member_transfer/pgd.json")
    conda:
        "../../envs/pdd.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        runtime=2 * 60,
        mem_mb=16000,
    params:
        args=get_member_transfer_args,
        data_root=RUNTIME["data_root"],
        device=RUNTIME["device"],
        code=CODE["member_transfer"],
    shell:
        "pdd member-transfer --model {input:q} {params.args} --data-root {params.data_root:q} --device {params.device:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"


rule gradcam:
    """Grad-CAM of each member of one output's ensembles on one test image; for a table also the centre distance
    over the commonly correct test images (Figure 1)."""
    input:
        get_figure_models,
    output:
        record=f"{FIGURE_DATA}/gradcam.json",
        arrays=f"{FIGURE_DATA}/gradcam.npz",
    log:
        f"{LOGS}/gradcam/{{name}}.log",
    benchmark:
        paths.benchmark("gradcam", f"{FIGURE_DATA}/gradcam.json")
    conda:
        "../../envs/pdd.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        runtime=60,
        mem_mb=16000,
    params:
        args=get_gradcam_args,
        data_root=RUNTIME["data_root"],
        device=RUNTIME["device"],
        code=CODE["gradcam"],
    shell:
        "pdd gradcam {params.args} --data-root {params.data_root:q} --device {params.device:q} --threads {threads}"
        " --out {output.record:q} > {log:q} 2>&1"


rule examples:
    """PGD examples of one test image crafted on each of one output's ensembles (Figure 5)."""
    input:
        get_figure_models,
    output:
        record=f"{FIGURE_DATA}/examples.json",
        arrays=f"{FIGURE_DATA}/examples.npz",
    log:
        f"{LOGS}/examples/{{name}}.log",
    benchmark:
        paths.benchmark("examples", f"{FIGURE_DATA}/examples.json")
    conda:
        "../../envs/pdd.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        runtime=30,
        mem_mb=16000,
    params:
        args=get_examples_args,
        data_root=RUNTIME["data_root"],
        device=RUNTIME["device"],
        code=CODE["examples"],
    shell:
        "pdd examples {params.args} --data-root {params.data_root:q} --device {params.device:q} --threads {threads}"
        " --out {output.record:q} > {log:q} 2>&1"
