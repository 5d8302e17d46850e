"""C&W L2 with and without the early abort (`evaluation.cw.abort_early`) on the demo's ensembles; by hand.

    python benchmarks/bench_cw_abort.py                                       # the demo's C&W settings
    python benchmarks/bench_cw_abort.py --max-iter 1000 --binary-search-steps 5   # the paper's

Trains the demo config's K = 3 baseline and PDD+DEG ensembles (its training settings, seed 0) into --models unless
they are there, takes the protocol's --images test images (evaluation.seed) and crafts C&W, exactly as `pdd
attack` does (only on the images the ensemble classifies correctly), with abort_early off (ART's
CarliniL2Method, every iteration) and on, at the config's confidence, learning rate and initial constant
(demo: c = 0.1). Per ensemble and setting: images fooled, mean L2 of the fooled images' perturbations, the
ensemble image-passes (CostMeter: forward + backward images) and seconds; the saving is 1 - passes on / off.
Writes --out (JSON) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from pdd.data import get_dataset
from pdd.evaluation.attacks import generate, predict, select_images
from pdd.evaluation.cost_meter import CostMeter
from pdd.io import write_json
from pdd.models import load_ensemble
from pdd.plan import config as plan
from pdd.training import train

DATASET, K, SEED = "digits", 3, 0


def ensemble(config: dict, method: str, models: Path):
    """The demo's K = 3 ensemble of `method`, trained first (its config's training settings) if absent."""
    path = models / f"{method}.pt"
    if not path.exists():
        train(plan.train_config(config, DATASET, K, method, SEED), config["data_root"], path,
              models / f"{method}.csv")
    return load_ensemble(path)


def run(model, x: torch.Tensor, y: torch.Tensor, c: float, settings) -> dict:
    """One C&W run on the correctly classified images: fooled count, mean L2 of the fooled, passes, seconds."""
    cpu = torch.device("cpu")
    correct = predict(model, x, cpu) == y
    start = time.perf_counter()
    with CostMeter(model) as cost:
        x_adv = generate(model, x, y, "cw", c, settings, cpu, only=correct)
    seconds = time.perf_counter() - start
    fooled = correct & (predict(model, x_adv, cpu) != y)
    l2 = (x_adv - x).flatten(1).norm(dim=1)[fooled]
    attacked, iterations = int(correct.sum()), settings.cw_max_iter * settings.cw_binary_search_steps
    forward, backward = cost["forward_images"], cost["backward_images"]
    return {"attacked": attacked, "fooled": int(fooled.sum()), "mean_l2": float(l2.mean()) if len(l2) else 0.0,
            "passes": forward + backward, "forward": forward, "backward": backward, "seconds": seconds,
            # ART's line search: forwards per image-iteration beyond the two class gradients' (exact when every
            # iteration runs, i.e. without the abort): all forwards less the gradients' and each step's first loss
            "line_search_forwards": (forward - backward - attacked * settings.cw_binary_search_steps)
            / max(attacked * iterations, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/demo.yaml")
    parser.add_argument("--models", default="results/bench_cw_abort", help="Where the demo ensembles are (trained).")
    parser.add_argument("--methods", nargs="+", default=["baseline", "pdd_deg"])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--max-iter", type=int, help="C&W iterations per binary-search step (default: the config's).")
    parser.add_argument("--binary-search-steps", type=int, help="Default: the config's.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/bench_cw_abort.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path(args.config).read_text())
    settings = plan.attack_settings(config)
    settings = replace(settings, cw_max_iter=args.max_iter or settings.cw_max_iter,
                       cw_binary_search_steps=args.binary_search_steps or settings.cw_binary_search_steps)
    c = plan.suite_params(config, "whitebox", DATASET, "cw")[0]
    x, y = select_images(get_dataset(DATASET, "test", config["data_root"]), args.images, settings.seed)
    models = Path(args.models)
    models.mkdir(parents=True, exist_ok=True)
    rows = []
    for method in args.methods:
        model = ensemble(config, method, models)
        off, on = (run(model, x, y, c, replace(settings, cw_abort_early=flag)) for flag in (False, True))
        rows.append({"method": method, "c": c, "max_iter": settings.cw_max_iter,
                     "binary_search_steps": settings.cw_binary_search_steps, "off": off, "on": on,
                     "saving": 1 - on["passes"] / off["passes"]})
        write_json(args.out, rows)
    print(f"C&W L2, c = {c}, {settings.cw_max_iter} iterations x {settings.cw_binary_search_steps} binary-search "
          f"steps, {args.images} test images ({args.config})\n")
    print("| ensemble | attacked | fooled off / on | mean L2 off / on | passes off / on | saving | s off / on |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        off, on = r["off"], r["on"]
        print(f"| {r['method']} K={K} | {off['attacked']} | {off['fooled']} / {on['fooled']} | "
              f"{off['mean_l2']:.4f} / {on['mean_l2']:.4f} | {off['passes']:,} / {on['passes']:,} | "
              f"{100 * r['saving']:.1f}% | {off['seconds']:.0f} / {on['seconds']:.0f} |")
    print("\nLine-search forwards per image-iteration without the abort: "
          + ", ".join(f"{r['method']} {r['off']['line_search_forwards']:.2f}" for r in rows))


if __name__ == "__main__":
    main()
