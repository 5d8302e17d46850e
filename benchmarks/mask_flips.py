"""How often the fused members' float rounding flips a PDD mask, and what that does to the trained ensemble.

Run by hand (not collected by pytest):

    python benchmarks/mask_flips.py --threads 2          # the demo's PDD training (config/demo.yaml)

Part 1, one demo epoch: the loop-trained ensemble is the reference trajectory; before every step the same
weights compute the penultimate features both ways (members in a loop, members fused) on the step's batch, and
the script counts the units whose PDD interval differs, the samples whose priority intervals t_1..t_K differ, and
the mask entries that differ under the same uniform draws (mask = u < keep rate).
Part 2: the demo's `pdd train` settings for K = 3, trained members-in-a-loop and fused, per method: largest
weight difference and test accuracy of each.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from pdd import data
from pdd.dropout import interval_index, keep_probabilities
from pdd.methods import get_method
from pdd.models import read_checkpoint
from pdd.plan.config import train_config
from pdd.training import _fresh, train

CONFIG = Path(__file__).resolve().parents[1] / "config" / "demo.yaml"


def flips_over_an_epoch(cfg, root: str) -> dict[str, float]:
    """Counts of Part 1 over the first epoch of `cfg` (a PDD method)."""
    method = get_method(cfg.method, cfg.loss_settings)
    model, optimizers, _ = _fresh(replace(cfg, fuse_members=False), method, torch.device("cpu"))
    k, m, alpha, beta = cfg.members, cfg.pdd_intervals, cfg.pdd_alpha, cfg.pdd_beta
    train_set = data.get_dataset(cfg.dataset, "train", root)
    loader = DataLoader(train_set, cfg.batch_size, shuffle=True, generator=torch.Generator().manual_seed(cfg.seed),
                        drop_last=True)
    totals = dict.fromkeys(("steps", "units", "bins", "samples", "priority", "masks", "max_feature_diff"), 0.0)
    method.start_epoch(model, 0, cfg.epochs, cfg.seed)
    for x, y in loader:
        model.train()
        with torch.no_grad():
            probe = copy.deepcopy(model)  # the forward updates BatchNorm statistics: measure on a copy
            loop = probe.features(x).transpose(0, 1).reshape(len(x), -1)
            probe = copy.deepcopy(model)
            probe.fuse_members = True
            fused = probe.fused_features(x)
        bins = [interval_index(f, m) for f in (loop, fused)]
        priority = []
        for b in bins:
            counts = torch.zeros(len(x), m).scatter_add_(1, b, torch.ones_like(b, dtype=torch.float32))
            priority.append(counts.sort(dim=1, descending=True, stable=True).indices[:, :k])
        uniform = torch.rand_like(loop)
        masks = [uniform < keep_probabilities(f, k, m, alpha, beta) for f in (loop, fused)]
        totals["steps"] += 1
        totals["units"] += loop.numel()
        totals["samples"] += len(x)
        totals["bins"] += (bins[0] != bins[1]).sum().item()
        totals["priority"] += (priority[0] != priority[1]).any(1).sum().item()
        totals["masks"] += (masks[0] != masks[1]).sum().item()
        totals["max_feature_diff"] = max(totals["max_feature_diff"], (loop - fused).abs().max().item())
        method.step(model, optimizers, x, y)
    return totals


def train_both(cfg, root: str, out: Path) -> dict[str, float]:
    """Part 2 for one method: train loop and fused, compare."""
    results = {}
    for fuse in (False, True):
        path = out / f"{cfg.method}_{fuse}.pt"
        last = train(replace(cfg, fuse_members=fuse), root, path, path.with_suffix(".csv"))
        results[fuse] = (last["test_accuracy"], read_checkpoint(path)["state_dict"])
    diff = max((results[True][1][k].float() - v.float()).abs().max().item() for k, v in results[False][1].items())
    return {"loop_accuracy": results[False][0], "fused_accuracy": results[True][0], "max_weight_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["baseline", "pdd", "pdd_deg"])
    parser.add_argument("--epochs", type=int, help="override the demo's epochs in part 2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(CONFIG.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        root = tmp  # the digits are bundled with scikit-learn
        cfg = train_config(config, "digits", 3, "pdd", 0)
        t = flips_over_an_epoch(cfg, root)
        print(f"## PDD masks over one demo epoch (digits, {cfg.arch} width {cfg.width}, K={cfg.members}, "
              f"M={cfg.pdd_intervals}, batch {cfg.batch_size}, {int(t['steps'])} steps)\n")
        print("| measure | count | of | rate |\n|---|---:|---:|---:|")
        for label, key, total in (("units in another interval", "bins", "units"),
                                  ("samples with other priority intervals", "priority", "samples"),
                                  ("mask entries that differ (same draws)", "masks", "units")):
            print(f"| {label} | {int(t[key])} | {int(t[total])} | {t[key] / t[total]:.2e} |")
        print(f"\nlargest feature difference, loop vs fused: {t['max_feature_diff']:.2e}\n")
        print(f"## The demo's training, members in a loop vs fused ({args.epochs or cfg.epochs} epochs)\n")
        print("| method | loop test accuracy | fused test accuracy | largest weight difference |\n|---|---:|---:|---:|")
        for name in args.methods:
            mcfg = train_config(config, "digits", 3, name, 0)
            if args.epochs:
                mcfg = replace(mcfg, epochs=args.epochs)
            r = train_both(mcfg, root, Path(tmp))
            print(f"| {name} | {r['loop_accuracy']:.4f} | {r['fused_accuracy']:.4f} | {r['max_weight_diff']:.3g} |")


if __name__ == "__main__":
    main()
