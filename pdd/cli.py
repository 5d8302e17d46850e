"""`pdd` command line: one subcommand per workflow stage (each Snakemake rule calls one)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import torch

from pdd import __version__


def _threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """Reproduce 'Adversarial Defense by Diversified Simultaneous Training of Deep Ensembles'."""


@main.command("prepare-data")
@click.option("--dataset", required=True)
@click.option("--root", default="resources", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), help="JSON manifest to write (split sizes, source, checksums).")
@click.option("--download/--no-download", default=True, show_default=True)
def prepare_data(dataset: str, root: str, out: str | None, download: bool) -> None:
    """Make DATASET loadable under ROOT (system data linked first, else download), verify it, say whence."""
    from pdd import data
    from pdd.io import write_json

    try:
        prepared = data.prepare(dataset, root, download)
    except (data.DatasetMissing, ValueError) as err:  # DatasetCorrupt is a ValueError
        raise click.ClickException(str(err)) from err
    click.echo(f"{dataset}: {prepared.sizes} from {prepared.source}")
    if out:
        write_json(out, {"dataset": dataset, "root": str(root), **prepared.manifest()})


@main.command()
@click.option("--dataset", required=True)
@click.option("--method", required=True)
@click.option("--members", "-k", type=int, required=True, help="Ensemble size K.")
@click.option("--arch", default="resnet18", show_default=True)
@click.option("--width", default=64, show_default=True, help="Channels of the first stage (64 = standard).")
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", default=40, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=0.02, show_default=True)
@click.option("--momentum", default=0.9, show_default=True)
@click.option("--weight-decay", default=5e-4, show_default=True)
@click.option("--lr-min", default=1e-4, show_default=True, help="Cosine annealing floor.")
@click.option("--augment/--no-augment", default=False, show_default=True, help="Random crop (pad 4) + flip.")
@click.option("--pdd-intervals", default=10, show_default=True, help="PDD's M (> K).")
@click.option("--pdd-alpha", default=0.9, show_default=True)
@click.option("--pdd-beta", default=0.1, show_default=True)
@click.option("--deg-lambda", default=0.01, show_default=True)
@click.option("--adp-alpha", default=2.0, show_default=True)
@click.option("--adp-beta", default=0.5, show_default=True)
@click.option("--adv-eps", default=0.02, show_default=True, help="Adversarial training L-inf budget.")
@click.option("--adv-steps", default=10, show_default=True, help="PGD steps of adversarial training.")
@click.option("--gal-lambda", default=0.5, show_default=True, help="GAL's weight of the coherence penalty.")
@click.option("--trs-coeff", default=2.0, show_default=True, help="TRS's weight of the gradient similarity.")
@click.option("--trs-lamda", default=2 / 128**2, show_default=True,
              help="TRS's weight of the per-sample smoothness term (the authors' 2.0 at batch-mean gradients, batch 128).")
@click.option("--trs-scale", default=5.0, show_default=True, help="TRS's weight of both terms.")
@click.option("--trs-init-eps", default=0.01, show_default=True, help="TRS gradient-norm PGD eps, first epoch.")
@click.option("--trs-adv-eps", default=0.03, show_default=True, help="TRS gradient-norm PGD eps, last epoch.")
@click.option("--trs-steps", default=6, show_default=True, help="TRS gradient-norm PGD steps (each eps/3).")
@click.option("--dverge-eps", default=0.07, show_default=True, help="DVERGE feature-distillation L-inf budget.")
@click.option("--dverge-step", default=0.007, show_default=True, help="DVERGE distillation step size.")
@click.option("--dverge-steps", default=10, show_default=True, help="DVERGE distillation steps.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False),
              help="Trained ensemble the method starts from (dverge: the baseline of the same dataset/K/arch/width/seed).")
@click.option("--data-root", default="resources", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True, help="'auto': a free GPU, else CPU.")
@click.option("--threads", type=int, help="CPU threads for torch.")
@click.option("--workers", default=0, show_default=True, help="DataLoader worker processes.")
def train(**opts) -> None:
    """Train one ensemble; resumes from OUT.state after an interruption."""
    from pdd.devices import select_device
    from dataclasses import fields

    from pdd.methods import LossSettings
    from pdd.training import TrainConfig, train as run

    _threads(opts.pop("threads"))
    settings = {f.name: opts.pop(f.name) for f in fields(LossSettings)}
    device = select_device(opts.pop("device"), training=True)
    out, log, root, workers = opts.pop("out"), opts.pop("log_path"), opts.pop("data_root"), opts.pop("workers")
    try:
        cfg = TrainConfig(loss_settings=LossSettings(**settings), **opts)
        last = run(cfg, root, out, log, device, workers)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"trained {out} on {device}: test accuracy {last['test_accuracy']:.4f}")


EXTERNAL_OPTIONS = ("factory", "weights", "dataset", "name", "model_seed")


def _external_options(f):
    """--factory, --weights, --dataset, --name, --model-seed: evaluate a user's model instead of a pdd checkpoint;
    the command receives them as one `external` dict (None without --factory)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        given = {k: kwargs.pop(k) for k in EXTERNAL_OPTIONS}
        if not given["factory"]:
            stray = [f"--{k.replace('_', '-')}" for k in ("weights", "dataset", "name") if given[k]]
            if stray:
                raise click.UsageError(f"{', '.join(stray)} describe an external model: give --factory too")
        return f(*args, external=given if given["factory"] else None, **kwargs)

    for option in reversed([
        click.option("--factory", help="External model instead of a pdd checkpoint: 'package.module:function' "
                                       "returning an nn.Module (logits [B, L]) or a list of member modules."),
        click.option("--weights", type=click.Path(exists=True, dir_okay=False),
                     help="With --factory: its state_dict (a list of them for members), loaded as data only."),
        click.option("--dataset", help="With --factory: the dataset to evaluate on."),
        click.option("--name", help="With --factory: the method name in the result records."),
        click.option("--model-seed", default=0, show_default=True, help="With --factory: the records' seed."),
    ]):
        wrapper = option(wrapper)
    return wrapper


def _external_label(external: dict) -> str:
    """What the records' `model` field says of an external model: its weights file, else its factory."""
    return external["weights"] or external["factory"]


def _load(path: str | None, device: torch.device, external: dict | None = None):
    """(ensemble in eval mode, its training config) from a final checkpoint or, with `external` (see
    `_external_options`), from a user's factory and weights (config: dataset, K, --name, arch 'external');
    clear errors."""
    from pdd.models import CheckpointError, ensemble_from_checkpoint, read_checkpoint

    if external is not None:
        from pdd.external import ARCH, load_external

        if path:
            raise click.UsageError("give a pdd checkpoint or --factory, not both")
        missing = [f"--{k}" for k in ("dataset", "name") if not external[k]]
        if missing:
            raise click.UsageError(f"--factory needs {' and '.join(missing)}")
        try:
            model = load_external(external["factory"], external["weights"], device, dataset=external["dataset"])
        except ValueError as err:  # ExternalModelError, unknown dataset
            raise click.ClickException(str(err)) from err
        return model, {"dataset": external["dataset"], "members": model.num_members, "method": external["name"],
                       "arch": ARCH, "seed": external["model_seed"]}
    if not path:
        raise click.UsageError("give a pdd checkpoint (--model / --target) or an external model (--factory ...)")
    try:
        ckpt = read_checkpoint(path, device)
        model = ensemble_from_checkpoint(ckpt, path).to(device).eval()
    except CheckpointError as err:
        raise click.ClickException(str(err)) from err
    return model, ckpt.get("train_config", {})


def _attack_options(f):
    for option in reversed([
        click.option("--attack", required=True, help="none, fgsm, bim, pgd, pgd_l2, jsma or cw."),
        click.option("--param", "params", type=float, multiple=True, help="eps, JSMA gamma or C&W initial constant; repeatable."),
        click.option("--num-images", type=int, help="Test images to attack (default: all)."),
        click.option("--batch-size", default=500, show_default=True),
        click.option("--steps", default=10, show_default=True, help="BIM / PGD iterations."),
        click.option("--step-fraction", default=0.1, show_default=True, help="BIM / PGD step size / eps."),
        click.option("--jsma-theta", default=0.1, show_default=True),
        click.option("--cw-confidence", default=0.01, show_default=True),
        click.option("--cw-learning-rate", default=0.01, show_default=True),
        click.option("--cw-max-iter", default=1000, show_default=True),
        click.option("--cw-binary-search-steps", default=5, show_default=True),
        click.option("--seed", default=0, show_default=True, help="Image subset, JSMA targets, random starts."),
        click.option("--data-root", default="resources", show_default=True),
        click.option("--out", required=True, type=click.Path(dir_okay=False)),
        click.option("--device", default="auto", show_default=True),
        click.option("--threads", type=int),
    ]):
        f = option(f)
    return f


def _attack(target_path: str | None, surrogate_path: str | None, threat: str, opts: dict,
            external: dict | None = None) -> None:
    from pdd import data
    from pdd.attacks import AttackSettings, check_attack, run_attack, select_images
    from pdd.devices import select_device
    from pdd.io import write_json

    _threads(opts["threads"])
    try:
        check_attack(opts["attack"])
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    device = select_device(opts["device"])
    target, cfg = _load(target_path, device, external)
    target_path = _external_label(external) if external else target_path
    surrogate = _load(surrogate_path, device)[0] if surrogate_path else None
    settings = AttackSettings(
        steps=opts["steps"], step_fraction=opts["step_fraction"], jsma_theta=opts["jsma_theta"],
        cw_confidence=opts["cw_confidence"], cw_learning_rate=opts["cw_learning_rate"],
        cw_max_iter=opts["cw_max_iter"], cw_binary_search_steps=opts["cw_binary_search_steps"],
        batch_size=opts["batch_size"], seed=opts["seed"])
    x, y = select_images(data.get_dataset(cfg["dataset"], "test", opts["data_root"]), opts["num_images"], opts["seed"])
    attack = opts["attack"]
    if (attack == "none") != (not opts["params"]):
        raise click.ClickException("give --param for every attack except 'none', and none for 'none'")
    records = []
    for param in opts["params"] or [None]:
        result = run_attack(target, x, y, attack, param or 0.0, settings, device, surrogate)
        value = result["clean_accuracy"] if attack == "none" else result["accuracy_on_correct"]
        records.append({"dataset": cfg["dataset"], "K": cfg["members"], "method": cfg["method"], "arch": cfg["arch"],
                        "seed": cfg["seed"], "threat": threat, "attack": attack, "param": param,
                        "metric": "accuracy_pct", "value": value, "model": target_path, "surrogate": surrogate_path,
                        **result})
        click.echo(f"{attack} {param}: {value:.2f}% ({result['images_per_second']:.1f} images/s)", err=True)
    write_json(opts["out"], records)


@main.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="A pdd checkpoint.")
@_external_options
@_attack_options
def attack(model_path: str | None, external: dict | None, **opts) -> None:
    """White-box attack on a trained ensemble's log(mean softmax) (--model, or --factory for your own);
    writes a result JSON."""
    _attack(model_path, None, "whitebox", opts, external)


@main.command()
@click.option("--surrogate", "surrogate_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "target_path", type=click.Path(exists=True, dir_okay=False),
              help="A pdd checkpoint (or --factory for your own target).")
@click.option("--threat", type=click.Choice(["blackbox_oblivious", "blackbox_adaptive"]), required=True)
@_external_options
@_attack_options
def transfer(surrogate_path: str, target_path: str | None, threat: str, external: dict | None, **opts) -> None:
    """Black-box: craft on SURROGATE, score on TARGET (--target, or --factory); writes a result JSON."""
    _attack(target_path, surrogate_path, threat, opts, external)


@main.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="A pdd checkpoint.")
@_external_options
@click.option("--surrogate", "surrogate_path", type=click.Path(exists=True, dir_okay=False),
              help="Independent ensemble for the transfer check (the config's oblivious surrogate).")
@click.option("--eps", "eps_values", type=float, multiple=True, required=True, help="L-inf budget; repeatable.")
@click.option("--apgd-iterations", default=100, show_default=True)
@click.option("--apgd-restarts", default=5, show_default=True)
@click.option("--pgd-steps", "pgd_steps", type=int, multiple=True, default=(10, 50, 200), show_default=True,
              help="PGD step counts of the convergence check; repeatable.")
@click.option("--pgd-restarts", default=5, show_default=True, help="Random starts at the largest step count.")
@click.option("--step-fraction", default=0.1, show_default=True, help="PGD step size / eps.")
@click.option("--transfer-steps", default=50, show_default=True, help="PGD steps on the surrogate.")
@click.option("--diagnostic-eps", default=0.5, show_default=True)
@click.option("--diagnostic-max-accuracy", default=5.0, show_default=True,
              help="Accuracy (% of initially correct) allowed at --diagnostic-eps.")
@click.option("--unbounded-eps", default=1.0, show_default=True)
@click.option("--diagnostic-steps", default=200, show_default=True, help="PGD steps at the diagnostic eps values.")
@click.option("--noise-images", default=1, show_default=True, help="Tolerance of the transfer and convergence checks.")
@click.option("--num-images", type=int, help="Test images to attack (default: all).")
@click.option("--batch-size", default=500, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Image subset and random starts.")
@click.option("--data-root", default="resources", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int)
def strong(model_path: str | None, external: dict | None, surrogate_path: str | None, eps_values: tuple[float, ...],
           num_images: int | None, data_root: str, out: str, device: str, threads: int | None, **opts) -> None:
    """Strong evaluation: APGD-CE, APGD-DLR and PGD with restarts, worst case per image, and four
    gradient-masking diagnostics (--model, or --factory for your own); writes a result JSON."""
    from pdd import data
    from pdd.attacks import select_images
    from pdd.devices import select_device
    from pdd.io import write_json
    from pdd.strong import StrongSettings, evaluate

    _threads(threads)
    try:
        settings = StrongSettings(**{**opts, "pgd_steps": tuple(sorted(opts["pgd_steps"]))})
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    dev = select_device(device)
    model, cfg = _load(model_path, dev, external)
    model_path = _external_label(external) if external else model_path
    surrogate = _load(surrogate_path, dev)[0] if surrogate_path else None
    x, y = select_images(data.get_dataset(cfg["dataset"], "test", data_root), num_images, settings.seed)
    records = evaluate(model, x, y, sorted(eps_values), settings, dev, surrogate)
    key = {"dataset": cfg["dataset"], "K": cfg["members"], "method": cfg["method"], "arch": cfg["arch"],
           "seed": cfg["seed"], "model": model_path, "surrogate": surrogate_path}
    write_json(out, [{**key, **r} for r in records])
    for r in records:
        if r["threat"] != "diagnostic" or r["metric"] == "passed":
            label = f"{r['attack']} {'' if r['param'] is None else r['param']}"
            value = "   n/a" if r["value"] is None else f"{r['value']:6.2f}"  # a check that could not run
            click.echo(f"{r['threat']:<18} {label:<22} {value}  {r.get('detail', '')}", err=True)


@main.command()
@click.option("--name", required=True, help="Output table name, e.g. table2_whitebox_k3.")
@click.option("--paper", "paper_csv", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--reference", multiple=True, help="OURS=PAPER: show the paper's PAPER numbers beside dataset OURS.")
@click.option("--out-csv", required=True)
@click.option("--out-md", required=True)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def table(name: str, paper_csv: str, reference: tuple[str, ...], out_csv: str, out_md: str,
          inputs: tuple[str, ...]) -> None:
    """Build table NAME from result JSONs (or, for `timing`, training logs; for `table_strong_evaluation`,
    `pdd strong` results and the white-box PGD results)."""
    from pdd import tables

    ref = dict(item.split("=", 1) for item in reference)
    results = tables.timing_results(list(inputs)) if name == "timing" else tables.read_results(list(inputs))
    if name == tables.STRONG_TABLE:
        df = tables.build_strong_table(results, paper_csv, ref, out_csv, out_md)
        for line in (ln for ln in (Path(out_md).read_text().splitlines()) if ln.startswith(tables.MASKING_WARNING)):
            click.echo(line, err=True)
    else:
        df = tables.build_table(name, results, paper_csv, ref, out_csv, out_md)
    click.echo(f"{out_csv}: {len(df)} rows")


@main.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="A pdd checkpoint.")
@_external_options
@click.option("--num-images", type=int, help="Test images (default: all).")
@click.option("--batch-size", default=250, show_default=True)
@click.option("--seed", default=0, show_default=True, help="Image subset.")
@click.option("--data-root", default="resources", show_default=True)
@click.option("--out-json", required=True, type=click.Path(dir_okay=False), help="Table 1 record (entropy E).")
@click.option("--out-csv", required=True, type=click.Path(dir_okay=False), help="Per-image L_F and gradient angle.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int)
def diversity(model_path: str | None, external: dict | None, num_images: int | None, batch_size: int, seed: int,
              data_root: str, out_json: str, out_csv: str, device: str, threads: int | None) -> None:
    """Ambiguity entropy (eq. 5), per-image discrimination (eq. 6) and gradient angles of an ensemble
    (--model, or --factory for your own: without a feature split its L_F, S_b, S_w are empty)."""
    import pandas as pd

    from pdd import data
    from pdd.attacks import select_images
    from pdd.devices import select_device
    from pdd.diversity import ambiguity_entropy
    from pdd.external import diversity_per_image
    from pdd.io import write_json, write_text

    _threads(threads)
    dev = select_device(device)
    model, cfg = _load(model_path, dev, external)
    model_path = _external_label(external) if external else model_path
    if model.num_members < 2:
        raise click.ClickException(f"diversity needs an ensemble of K >= 2 members, got K = {model.num_members}")
    x, y = select_images(data.get_dataset(cfg["dataset"], "test", data_root), num_images, seed)
    stats = diversity_per_image(model, x, y, dev, batch_size)
    entropy = ambiguity_entropy(stats["member_correct"])
    key = {"dataset": cfg["dataset"], "K": cfg["members"], "method": cfg["method"], "seed": cfg["seed"]}
    write_json(out_json, [{**key, "threat": "none", "attack": "none", "param": None, "metric": "entropy",
                           "value": entropy, "n_images": len(y), "model": model_path}])
    frame = pd.DataFrame({"image": range(len(y)), "correct": stats["correct"].numpy(),
                          "members_correct": stats["member_correct"].sum(0).numpy(),
                          "fisher": stats["fisher"].numpy(), "angle": stats["angle"].numpy()})
    for name, value in reversed(key.items()):
        frame.insert(0, name, value)
    write_text(out_csv, frame.to_csv(index=False))
    click.echo(f"entropy {entropy:.4f} over {len(y)} images", err=True)


@main.command()
@click.option("--name", required=True, type=click.Choice(["figure2_discrimination", "figure3_gradient_angles",
                                                          "figure4_pgd_strength", "figure_strong_steps"]))
@click.option("--method", "methods", multiple=True, required=True, help="Methods in plotting order; repeatable.")
@click.option("--num-images", type=int, help="Figures 2-3: at most this many commonly correct images.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def figure(name: str, methods: tuple[str, ...], num_images: int | None, out: str, inputs: tuple[str, ...]) -> None:
    """Draw figure NAME from per-image diversity CSVs (Figures 2, 3), PGD sweep results (Figure 4) or
    strong-evaluation results (figure_strong_steps)."""
    import pandas as pd

    from pdd import figures, tables

    if name == "figure4_pgd_strength":
        figures.pgd_strength(tables.read_results(list(inputs)), list(methods), out)
    elif name == "figure_strong_steps":
        figures.strong_steps(tables.read_results(list(inputs)), list(methods), out)
    else:
        per_image = pd.concat([pd.read_csv(p) for p in inputs], ignore_index=True)
        measure = "fisher" if name == "figure2_discrimination" else "angle"
        rows = figures.diversity_boxplot(per_image, measure, list(methods), num_images, out)
        click.echo(rows.groupby("method")[measure].median().to_string(), err=True)


if __name__ == "__main__":
    sys.exit(main())
