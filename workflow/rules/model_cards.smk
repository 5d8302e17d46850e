# Model cards in RobustBench's model_info format, one per strongly evaluated ensemble, threat model and eps
# (pdd/plan/cards.py says which; pdd/reports/model_cards.py writes them). Local and cheap: a JSON from a JSON.

from pdd.plan.cards import CARD, card_source, cards


wildcard_constraints:
    threat_model="Linf|L2",
    eps=r"[0-9.e+-]+",


localrules:
    model_card,
    all_model_cards,


rule model_card:
    """RobustBench-format model card of one strongly evaluated ensemble at one eps."""
    input:
        lambda w: card_source(w.dataset, w.arch, w.K, w.method, w.seed, w.threat_model),
    output:
        CARD,
    log:
        f"{LOGS}/model_card/{{dataset}}_{{threat_model}}_{{method}}_{{arch}}_K{{K}}_seed{{seed}}_eps{{eps}}.log",
    conda:
        "../../envs/pdd.yaml"
    params:
        width=lambda w: plan.width(config, w.arch),
        code=fingerprint("pdd.reports.model_cards"),
    shell:
        "pdd model-card --evaluation {input:q} --eps {wildcards.eps} --threat-model {wildcards.threat_model}"
        " --width {params.width} --out {output:q} > {log:q} 2>&1"


rule all_model_cards:
    """Every model card the config implies (one per strongly evaluated ensemble, threat model and eps)."""
    input:
        cards(config),
