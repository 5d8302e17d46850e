"""What a stopping rule could save for BIM / PGD and JSMA, on the demo's ensembles and 100 test images; by hand.

    python benchmarks/bench_stop_rules.py          # after (or instead of) bench_cw_abort.py: same ensembles

BIM-30 (the stronger attacks' BIM: L-inf, step eps/10, no random start, 30 iterations) in plain torch on
log(mean softmax): per image the first iteration after which it is misclassified; stopping an image there would
use that many iterations instead of 30 (ART returns the last iterate, so such a rule would also keep the images
that were fooled and then recovered: the count is printed). JSMA through pdd (ART's SaliencyMapMethod): ART
predicts the whole batch after every iteration, the finished images too; the passes that predicting only the
unfinished ones would save are counted with CostMeter (forward - backward - the first prediction).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from pdd.data import get_dataset
from pdd.evaluation.attacks import generate, predict, select_images
from pdd.evaluation.cost_meter import CostMeter
from pdd.plan import config as plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cw_abort import DATASET, ensemble  # noqa: E402


def bim_first_success(model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 30) -> tuple[torch.Tensor,
                                                                                                    torch.Tensor]:
    """Per image: the first BIM iteration after which it is misclassified (steps + 1: never), and whether the
    last iterate is misclassified."""
    x_adv, first = x.clone(), torch.full((len(y),), steps + 1)
    for t in range(1, steps + 1):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.nll_loss(model.log_mean_prob(x_adv), y), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + eps / 10 * grad.sign(), x - eps), x + eps).clamp(0, 1)
        with torch.no_grad():
            wrong = model.log_mean_prob(x_adv).argmax(1) != y
        first = torch.where(wrong & (first > steps), torch.tensor(t), first)
    return first, predict(model, x_adv, torch.device("cpu")) != y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/demo.yaml")
    parser.add_argument("--models", default="results/bench_cw_abort")
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.config).read_text())
    settings = plan.attack_settings(config)
    x, y = select_images(get_dataset(DATASET, "test", config["data_root"]), args.images, settings.seed)
    cpu = torch.device("cpu")
    Path(args.models).mkdir(parents=True, exist_ok=True)
    for method in ("baseline", "pdd_deg"):
        model = ensemble(config, method, Path(args.models))
        correct = predict(model, x, cpu) == y
        xc, yc = x[correct], y[correct]
        for eps in (0.05, 0.1, 0.2):
            first, final = bim_first_success(model, xc, yc, eps)
            used = int(first.clamp(max=30).sum())
            print(f"{method} BIM-30 eps {eps}: {int(final.sum())}/{len(yc)} fooled at the end, "
                  f"{int((first <= 30).sum())} at some iteration; stopping each image at its first success: "
                  f"{used}/{30 * len(yc)} image-iterations ({100 * (1 - used / (30 * len(yc))):.0f}% saved)")
        for gamma in (0.1, 0.2):
            with CostMeter(model) as cost:
                generate(model, x, y, "jsma", gamma, settings, cpu, only=correct)
            forward, backward = cost["forward_images"], cost["backward_images"]
            wasted = forward - backward - int(correct.sum()) - backward  # batch predictions less the unfinished
            print(f"{method} JSMA gamma {gamma}: {forward} forward + {backward} backward images; predicting only the "
                  f"unfinished images would save {wasted} ({100 * wasted / (forward + backward):.0f}%)")


if __name__ == "__main__":
    main()
