"""`pdd` command line: one subcommand per workflow stage (each Snakemake rule calls one).

Options only parse and check values; the work is done by library functions. Settings options are derived
from the dataclasses that hold them (`TrainConfig`, `LossSettings`, `AttackSettings`, `StrongSettings`), so
each default has one home, and every bad value is a one-line usage error before any work starts.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, fields
from typing import Any

import click
import torch

from pdd import __version__
from pdd.cli_common import (
    FINITE,
    Checked,
    Decorator,
    Main,
    Registry,
    _one_line,
    _options,
    _out_option,
    _outputs,
    _set_debug,
    checked,
    exit_on_sigterm,
)
from pdd.data import DATASETS
from pdd.evaluation.attacks import ATTACKS, AttackSettings
from pdd.evaluation.peaks import PEAKS, PRECISIONS
from pdd.evaluation.strong import StrongSettings
from pdd.methods import METHODS, LossSettings, PluginError, get_method, register
from pdd.models import ARCHITECTURES
from pdd.plan.figure_jobs import FIGURE5_EPS
from pdd.plan.outputs import THREATS
from pdd.report_cli import REPORTS
from pdd.settings.attacks import check_param
from pdd.settings.strong import NORMS
from pdd.settings.timing import TimingSettings
from pdd.training import TrainConfig
from pdd.validation import VALUE_BOUNDS, Bound, InvalidValue, field_bound


class MethodName(Registry):
    """A training method: built in, registered by --plugins (read first), or an installed `pdd.methods` entry point."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            get_method(value)  # loads an entry point on first use
        except ValueError as err:
            self.fail(str(err), param, ctx)
        return value


def _register_plugins(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """--plugins: register the user's training methods before --method is read (the option is eager)."""
    import json

    if not value:
        return
    try:
        entries = json.loads(value)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not JSON: {err}") from err
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise click.BadParameter('expected {"<name>": {"module": "package.module:Class"} or {"file": "x.py", '
                                 '"class": "Class"}, with "settings": {...} if any}')
    for name, entry in entries.items():
        try:
            register(name, entry)
        except PluginError as err:
            raise click.BadParameter(str(err)) from err


_plugins_option = click.option(
    "--plugins", is_eager=True, expose_value=False, callback=_register_plugins,
    help="Training methods from your own code: the config's `methods` entries as JSON, "
         '{"<name>": {"module": "pkg.mod:Class"} or {"file": "x.py", "class": "Class"}, "settings": {...}}. '
         "Loading them runs their code.")


class AttackRun(click.ParamType):
    """An attack's name, or 'NAME=P1,P2,...' with its parameters (one --attack per attack of a job)."""

    name = "attack[=params]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, given, text = value.partition("=")
        name = Registry(ATTACKS, "attack").convert(name, param, ctx)
        if not given:
            return name, None
        params = tuple(FINITE.convert(p, param, ctx) for p in text.split(",")) if text else ()
        return name, params

# Click types of dataclass fields that are not numbers (registries, paths); numeric fields take their range
# from pdd.validation.FIELD_BOUNDS.
FIELD_TYPES: dict[str, click.ParamType] = {
    "dataset": Registry(DATASETS, "dataset"),
    "method": MethodName(METHODS, "method"),
    "arch": Registry(ARCHITECTURES, "architecture"),
    "init_from": click.Path(exists=True, dir_okay=False),
    "norm": Registry(NORMS, "norm"),
    "precision": Registry(PRECISIONS, "precision"),
}
FIELD_FLAGS: dict[str, tuple[str, ...]] = {"members": ("-k",)}  # extra names of a field's option


def _field_option(field: Field, help: str | None = None) -> Decorator:
    """The option of one dataclass field: --field-name, the field's default (required without one), its click
    type (FIELD_TYPES, else its range in pdd.validation.FIELD_BOUNDS; bools as --x/--no-x, tuples repeatable)."""
    flag = f"--{field.name.replace('_', '-')}"
    default = field.default if field.default is not MISSING else None
    bound = field_bound(field.name, default)
    kind = FIELD_TYPES.get(field.name) or (Checked(bound) if bound else click.STRING)
    text = help or field.metadata.get("help")
    if isinstance(default, bool) or field.type == "bool | None":  # None: the code decides (e.g. per device)
        return click.option(f"{flag}/--no-{flag[2:]}", field.name, default=default, show_default=default is not None,
                            help=text)
    return click.option(flag, *FIELD_FLAGS.get(field.name, ()), field.name, type=kind,
                        required=field.default is MISSING and field.default_factory is MISSING,
                        default=default, show_default=default is not None, multiple=isinstance(default, tuple),
                        help=text)


def _settings_options(cls: type, only: Iterable[str] | None = None, skip: Iterable[str] = (),
                      help: dict[str, str] | None = None) -> Decorator:
    """One option per field of dataclass `cls` (or of the fields `only`, less `skip`), defaults taken from
    the dataclass; `help` overrides a field's help. `_take(cls, opts)` turns them back into keyword arguments."""
    chosen = [f for f in fields(cls) if (only is None or f.name in only) and f.name not in set(skip)]
    if only is not None and len(chosen) != len(set(only)):
        raise ValueError(f"{cls.__name__} has no field(s) {set(only) - {f.name for f in chosen}}")

    def decorate(command: Callable) -> Callable:
        for field in reversed(chosen):
            command = _field_option(field, (help or {}).get(field.name))(command)
        return command

    return decorate


def _take(cls: type, opts: dict) -> dict:
    """Pop the values of `cls`'s fields out of a command's options: keyword arguments of `cls`."""
    return {f.name: opts.pop(f.name) for f in fields(cls) if f.name in opts}


def _settings(cls: type, **values: Any) -> Any:
    """`cls(**values)`; a value the dataclass rejects is a usage error (before any work), naming its option."""
    try:
        return cls(**values)
    except InvalidValue as err:
        raise click.BadParameter(err.problem, param_hint=f"'--{err.name.replace('_', '-')}'") from err
    except ValueError as err:
        raise click.UsageError(str(err)) from err


def _data_root_option(*aliases: str) -> Decorator:
    """--data-root (and `aliases`): where the datasets are, as every data-reading command takes it."""
    return click.option("--data-root", *aliases, "data_root", default="resources", show_default=True,
                        type=click.Path(file_okay=False), help="Where the datasets are (pdd prepare-data's root).")


_num_images_option = click.option("--num-images", type=checked("num_images"),
                                  help="Test images, a fixed random subset (default: all).")
_runtime_options = _options(
    click.option("--device", default="auto", show_default=True, callback=lambda ctx, param, value: _check_device(value),
                 help="'auto' (SLURM's GPU, else a free GPU claimed by a lock file, else the CPU), 'cpu', 'cuda' "
                      "or 'cuda:N'."),
    click.option("--threads", type=checked("threads"), help="CPU threads for torch (default: torch's own choice)."),
)


def _threads(threads: int | None) -> None:
    """Use `threads` CPU threads in torch (None: leave torch's choice)."""
    if threads:
        torch.set_num_threads(threads)


def _check_intervals(methods: Iterable[str], members: int, intervals: int) -> None:
    """PDD's M must exceed K when one of `methods` uses PDD: a usage error naming --pdd-intervals."""
    from pdd.settings.training import intervals_problem

    using = [m for m in methods if get_method(m).uses_pdd]
    if using and (problem := intervals_problem(members, intervals)):
        raise click.BadParameter(f"{', '.join(using)}: {problem}", param_hint="'--pdd-intervals'")


def _check_device(request: str) -> str:
    """--device: 'auto', or a torch device that exists here; else a usage error naming the option."""
    if request == "auto":
        return request
    try:
        device = torch.device(request)
    except RuntimeError:
        raise click.BadParameter(f"{request!r} is not a device: give 'auto', 'cpu', 'cuda' or 'cuda:N'",
                                 param_hint="'--device'") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise click.BadParameter(f"{request!r}: no CUDA GPU is visible on this machine", param_hint="'--device'")
        if device.index is not None and device.index >= count:
            raise click.BadParameter(f"{request!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}",
                                     param_hint="'--device'")
    elif device.type not in ("cpu", "mps") or (device.type == "mps" and not torch.backends.mps.is_available()):
        raise click.BadParameter(f"{request!r}: not available here; give 'auto', 'cpu', 'cuda' or 'cuda:N'",
                                 param_hint="'--device'")
    return request


@click.group(cls=Main)
@click.version_option(__version__)
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show the traceback of an unexpected error (as PDD_DEBUG=1 does).")
def main() -> None:
    """Reproduce 'Adversarial Defense by Diversified Simultaneous Training of Deep Ensembles'.

    Every bad value, unusable model or unwritable output is one line `pdd: error: ...` before any work
    (exit status 2 for usage, 1 for failures); PDD_DEBUG=1 or --debug shows a traceback.
    """
    signal.signal(signal.SIGTERM, exit_on_sigterm)


for _report in REPORTS:  # pdd.report_cli's table, figure and model-card (also run there, without torch)
    main.add_command(_report)


@main.command("prepare-data")
@_settings_options(TrainConfig, only=("dataset",))
@_data_root_option("--root")
@_out_option("JSON manifest to write (split sizes, source, checksums).", required=False)
@click.option("--download/--no-download", default=True, show_default=True, help="Download what is missing.")
def prepare_data(dataset: str, data_root: str, out: str | None, download: bool) -> None:
    """Make a dataset loadable and verify it.

    Links system-installed data first, else downloads into --root (= --data-root); checks the files and
    writes where they came from to the --out manifest.
    """
    from pdd import data
    from pdd.io import write_json

    _outputs(out=out)
    try:
        prepared = data.prepare(dataset, data_root, download)
    except (data.DatasetMissing, data.TorchvisionUnusable, ValueError) as err:  # DatasetCorrupt: a ValueError
        raise click.ClickException(str(err)) from err
    click.echo(f"{dataset}: {prepared.sizes} from {prepared.source}")
    if out:
        write_json(out, {"dataset": dataset, "root": str(data_root), **prepared.manifest()})


@main.command()
@_settings_options(TrainConfig, skip=("loss_settings",))
@_settings_options(LossSettings)
@_plugins_option
@_data_root_option()
@_out_option("The trained ensemble (checkpoint) to write.")
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False), help="Per-epoch CSV log to write.")
@click.option("--cost", "cost_path", type=click.Path(dir_okay=False),
              help="JSON to write the training's cost to (seconds, image-passes, peak memory).")
@_runtime_options
@click.option("--workers", default=0, show_default=True, type=checked("workers"), help="DataLoader worker processes.")
def train(out: str, log_path: str, cost_path: str | None, data_root: str, device: str, threads: int | None,
          workers: int, **opts) -> None:
    """Train one ensemble.

    The method's loss settings default to `pdd.methods.LossSettings`. An interrupted run resumes from
    OUT.state; --cost then covers the resumed part only.
    """
    from pdd.devices import select_device
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.io import write_json
    from pdd.models import CheckpointError
    from pdd.training import TrainingDiverged
    from pdd.training import train as run

    loss_settings = _settings(LossSettings, **_take(LossSettings, opts))
    cfg = _settings(TrainConfig, loss_settings=loss_settings, **_take(TrainConfig, opts))
    _check_intervals([cfg.method], cfg.members, cfg.pdd_intervals)
    _outputs(out=out, log=log_path, cost=cost_path, state=out + ".state")
    _threads(threads)
    dev = select_device(device, training=True, precision=cfg.precision)
    try:
        with CostMeter(device=dev) as cost:
            last = run(cfg, data_root, out, log_path, dev, workers)
    except (FileNotFoundError, ValueError, CheckpointError, TrainingDiverged) as err:  # a missing dataset, a bad
        raise click.ClickException(str(err)) from err                                 # --init-from, a NaN loss
    if cost_path:
        write_json(cost_path, cost)
    click.echo(f"trained {out} on {dev}: test accuracy {last['test_accuracy']:.4f}")


EXTERNAL_OPTIONS = ("factory", "weights", "dataset", "name", "model_seed", "members")


def _external_options(f: Callable) -> Callable:
    """--factory, --weights, --dataset, --name, --model-seed, --members: evaluate a user's model instead of a pdd
    checkpoint;
    the command receives them as one `external` dict (None without --factory). Checks that exactly one model is
    named (the command's `model_path` or `target_path`, or --factory) before any work."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {k: kwargs.pop(k) for k in EXTERNAL_OPTIONS}
        path = kwargs.get("model_path") or kwargs.get("target_path")
        if given["factory"]:
            if path:
                raise click.UsageError("give a pdd checkpoint or --factory, not both")
            missing = [f"--{k}" for k in ("dataset", "name") if not given[k]]
            if missing:
                raise click.UsageError(f"--factory needs {' and '.join(missing)}")
        else:
            stray = [f"--{k.replace('_', '-')}" for k in ("weights", "dataset", "name", "members") if given[k]]
            if stray:
                raise click.UsageError(f"{', '.join(stray)} describe an external model: give --factory too")
            if not path:
                raise click.UsageError("give a pdd checkpoint (--model / --target) or an external model "
                                       "(--factory ...)")
        return f(*args, external=given if given["factory"] else None, **kwargs)

    return _options(
        click.option("--factory", help="External model instead of a pdd checkpoint: 'package.module:function' "
                                       "returning an nn.Module (logits [B, L]) or a list of member modules."),
        click.option("--weights", type=click.Path(exists=True, dir_okay=False),
                     help="With --factory: its state_dict (a list of them for members), loaded as data only."),
        click.option("--dataset", type=FIELD_TYPES["dataset"], help="With --factory: the dataset to evaluate on."),
        click.option("--name", help="With --factory: the method name in the result records."),
        click.option("--model-seed", default=0, show_default=True, type=checked("model_seed"),
                     help="With --factory: the records' seed."),
        click.option("--members", type=checked("members"),
                     help="With --factory: the K the results are for (a table's K); a model with another number "
                          "of members is refused."),
    )(wrapper)


def _external_label(external: dict) -> str:
    """What the records' `model` field says of an external model: its weights file, else its factory."""
    return external["weights"] or external["factory"]


def _load(path: str | None, device: torch.device, external: dict | None = None,
          surrogate: str | None = None) -> tuple[torch.nn.Module, dict]:
    """(ensemble in eval mode, the key of its records (`pdd.evaluation.records.ensemble_key`, `surrogate` included))
    from a final checkpoint or, with `external` (see `_external_options`), from a user's factory and weights
    (dataset, K, --name, arch 'external', --model-seed); clear errors."""
    from pdd.evaluation.records import ensemble_key
    from pdd.models import CheckpointError, ensemble_from_checkpoint, read_checkpoint

    try:
        if external is not None:
            from pdd.evaluation.external import ARCH, load_external

            model = load_external(external["factory"], external["weights"], device, dataset=external["dataset"])
            if external["members"] and model.num_members != external["members"]:
                raise ValueError(f"external model {external['name']!r} has {model.num_members} member(s) but its "
                                 f"results are asked for K = {external['members']}: list it in a table whose K is "
                                 f"{model.num_members}, or give a {external['members']}-member model")
            config = {"dataset": external["dataset"], "members": model.num_members, "method": external["name"],
                      "arch": ARCH, "seed": external["model_seed"]}
            return model, ensemble_key(config, _external_label(external), surrogate)
        ckpt = read_checkpoint(path, device)
        model = ensemble_from_checkpoint(ckpt, path).to(device).eval()
        key = ensemble_key(ckpt.get("train_config") or {}, path, surrogate)
        _check_fits(model.spec, key["dataset"], path)
        return model, key
    except (CheckpointError, ValueError) as err:  # ExternalModelError is a ValueError
        raise click.ClickException(str(err)) from err


def _check_fits(spec: Any, dataset: str, path: str) -> None:
    """A checkpoint's ensemble takes its dataset's images and predicts its classes (a file edited or written by
    other code may not): a one-line error before any work."""
    from pdd import data

    info = data.info(dataset)
    if (spec.in_channels, spec.num_classes) != (info.in_channels, info.num_classes):
        raise ValueError(f"{path}: its ensemble takes {spec.in_channels}-channel images and predicts "
                         f"{spec.num_classes} classes, its dataset {dataset!r} has {info.in_channels} channels "
                         f"and {info.num_classes} classes")


def _load_surrogate(path: str, device: torch.device, target_key: dict) -> torch.nn.Module:
    """The surrogate checkpoint at `path`, which must have been trained on the dataset the target is evaluated
    on (so its inputs and classes are the target's)."""
    model, key = _load(path, device)
    if key["dataset"] != target_key["dataset"]:
        raise click.BadParameter(f"{path} was trained on {key['dataset']!r}, but the target is evaluated on "
                                 f"{target_key['dataset']!r}", param_hint="'--surrogate'")
    return model


def _split(dataset: str, split: str, data_root: str):
    """A dataset split; a missing or corrupt dataset is a one-line error."""
    from pdd import data

    try:
        return data.get_dataset(dataset, split, data_root)
    except (data.DatasetMissing, data.DatasetCorrupt, data.TorchvisionUnusable) as err:
        raise click.ClickException(str(err)) from err


def _images(dataset: str, split: str, data_root: str, num_images: int | None, seed: int):
    """`pdd.evaluation.attacks.select_images` of a dataset split."""
    from pdd.evaluation.attacks import select_images

    return select_images(_split(dataset, split, data_root), num_images, seed)


def _test_images(dataset: str, data_root: str, num_images: int | None, seed: int) -> tuple:
    """The protocol's images of the test split and their indices (`pdd.evaluation.attacks.protocol_images`)."""
    from pdd.evaluation.attacks import protocol_images

    return protocol_images(_split(dataset, "test", data_root), num_images, seed)


def _check_params(attack: str, params: tuple[float, ...], option: str = "--param") -> None:
    """Every attack but 'none' needs parameters, each inside the attack's range (its registry entry's bound: eps
    in (0, 1], JSMA's gamma in (0, 1], C&W's c > 0); `option` is where they were given, named in the error."""
    if (attack == "none") != (not params):
        raise click.UsageError(f"{attack}: give parameters (--param, or --attack NAME=P1,P2) for every attack "
                               "except 'none', and none for 'none'")
    for param in params:
        try:
            check_param(attack, param)
        except InvalidValue as err:
            raise click.BadParameter(err.problem, param_hint=f"'{option}'") from err


_attack_options = _options(
    click.option("--attack", "attacks", required=True, multiple=True, type=AttackRun(),
                 help=f"The paper's attack ({', '.join(ATTACKS)}; 'none': clean accuracy only); several in one job "
                      "as NAME=P1,P2 each (e.g. --attack fgsm=0.05,0.1 --attack none), each with its own --out."),
    click.option("--param", "params", type=FINITE, multiple=True,
                 help="With one --attack NAME: eps, JSMA's gamma or C&W's initial constant; repeatable; none for "
                      "'none'."),
    _num_images_option,
    _settings_options(AttackSettings, help={"seed": "Image subset, JSMA targets, random starts."}),
    _data_root_option(),
    click.option("--out", "outs", required=True, multiple=True, type=click.Path(dir_okay=False),
                 help="Result JSON to write, one per --attack in the same order: one record per parameter, then "
                      "that attack's cost record."),
    _runtime_options,
)


def _runs(attacks: tuple, params: tuple[float, ...], outs: tuple[str, ...]) -> list[tuple[str, tuple, str]]:
    """(attack, its parameters, its result file) of each --attack: one job runs several on one loaded model,
    so the process start (torch, ART) is paid once; --param only with a single bare --attack."""
    if len(outs) != len(attacks):
        raise click.UsageError(f"give one --out per --attack ({len(attacks)} attacks, {len(outs)} --out)")
    if params and (len(attacks) > 1 or attacks[0][1] is not None):
        raise click.UsageError("--param goes with a single --attack NAME; with several, write NAME=P1,P2")
    names = [name for name, _ in attacks]
    if len(set(names)) != len(names):
        raise click.UsageError(f"each attack once per job, got {', '.join(names)}")
    for name, given in attacks:
        _check_params(name, params if given is None else given, "--param" if given is None else "--attack")
    return [(name, params if given is None else given, out) for (name, given), out in zip(attacks, outs)]


def _attack(command: str, target_path: str | None, surrogate_path: str | None, threat: str, opts: dict,
            external: dict | None = None) -> None:
    """Run each attack of `pdd attack` / `pdd transfer` at each of its parameters and write its records and cost
    (`_runs`)."""
    from pdd.devices import select_device
    from pdd.evaluation.attacks import run_attack
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.evaluation.records import attack_record, cost_record
    from pdd.io import write_json

    runs = _runs(opts.pop("attacks"), opts.pop("params"), opts.pop("outs"))
    settings = _settings(AttackSettings, **_take(AttackSettings, opts))
    _outputs(**{"out" if len(runs) == 1 else f"out for {attack}": out for attack, _, out in runs})
    _threads(opts["threads"])
    device = select_device(opts["device"])
    target, key = _load(target_path, device, external, surrogate_path)
    surrogate = _load_surrogate(surrogate_path, device, key) if surrogate_path else None
    x, y, images = _test_images(key["dataset"], opts["data_root"], opts["num_images"], settings.seed)
    for attack, params, out in runs:
        records = []
        with CostMeter(device=device) as cost:
            for param in params or [None]:
                result = run_attack(target, x, y, attack, param or 0.0, settings, device, surrogate)
                records.append(attack_record(key, threat, attack, param, {**result, **images}))
                click.echo(f"{attack} {param}: {records[-1]['value']:.2f}% "
                           f"({result['images_per_second']:.1f} images/s)", err=True)
        write_json(out, [*records, cost_record(key, command, cost)])


@main.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="A pdd checkpoint.")
@_external_options
@_attack_options
def attack(model_path: str | None, external: dict | None, **opts: Any) -> None:
    """White-box attack on an ensemble's log(mean softmax).

    The ensemble is a pdd checkpoint (--model) or your own model (--factory ...). Writes one result record
    per --param and the job's cost record.
    """
    _attack("attack", model_path, None, "whitebox", opts, external)


@main.command()
@click.option("--surrogate", "surrogate_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The pdd checkpoint the examples are crafted on.")
@click.option("--target", "target_path", type=click.Path(exists=True, dir_okay=False),
              help="A pdd checkpoint (or --factory for your own target).")
@click.option("--threat", type=Registry(THREATS, "threat"), required=True, help="Black-box threat model.")
@_external_options
@_attack_options
def transfer(surrogate_path: str, target_path: str | None, threat: str, external: dict | None, **opts: Any) -> None:
    """Black-box attack: craft on a surrogate, score a target.

    The target is a pdd checkpoint (--target) or your own model (--factory ...). Writes one result record per
    --param and the job's cost record.
    """
    _attack("transfer", target_path, surrogate_path, threat, opts, external)


@main.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="A pdd checkpoint.")
@_external_options
@click.option("--surrogate", "surrogate_path", type=click.Path(exists=True, dir_okay=False),
              help="Independent ensemble for the transfer check (the config's oblivious surrogate).")
@click.option("--eps", "eps_values", type=checked("strong_eps"), multiple=True, required=True,
              help="Budget in --norm (L-inf: at most 1; L2); repeatable.")
@_settings_options(StrongSettings, help={"seed": "Image subset and random starts."})
@_num_images_option
@_data_root_option()
@_out_option("Result JSON to write: the strong evaluation's records, then the job's cost record.")
@_runtime_options
def strong(model_path: str | None, external: dict | None, surrogate_path: str | None, eps_values: tuple[float, ...],
           num_images: int | None, data_root: str, out: str, device: str, threads: int | None, **opts: Any) -> None:
    """Strong evaluation with gradient-masking checks.

    APGD-CE, APGD-DLR, APGD-T, MORA, Square and PGD with restarts in --norm, the worst case per image, and the
    gradient-masking diagnostics, on a pdd checkpoint (--model) or your own model (--factory ...).
    """
    from pdd.devices import select_device
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.evaluation.records import cost_record, keyed
    from pdd.evaluation.strong import evaluate
    from pdd.io import write_json

    settings = _settings(StrongSettings, **_take(StrongSettings, opts))
    if settings.norm == "linf":
        for eps in eps_values:
            if VALUE_BOUNDS["eps"].problem(eps):
                raise click.BadParameter(VALUE_BOUNDS["eps"].problem(eps), param_hint="'--eps'")
    _outputs(out=out)
    _threads(threads)
    dev = select_device(device)
    with CostMeter(device=dev) as cost:
        model, key = _load(model_path, dev, external, surrogate_path)
        surrogate = _load_surrogate(surrogate_path, dev, key) if surrogate_path else None
        x, y, images = _test_images(key["dataset"], data_root, num_images, settings.seed)
        records = evaluate(model, x, y, sorted(eps_values), settings, dev, surrogate)
    write_json(out, [*keyed(key, [{**r, **images} if r["metric"] == "accuracy_pct" else r for r in records]),
                     cost_record(key, "strong", cost)])
    for r in records:
        if r["threat"] != "diagnostic" or r["metric"] == "passed":
            label = f"{r['attack']} {'' if r['param'] is None else r['param']}"
            value = "   n/a" if r["value"] is None else f"{r['value']:6.2f}"  # a check that could not run
            click.echo(f"{r['threat']:<18} {label:<22} {value}  {r.get('detail', '')}", err=True)


@main.command()
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), help="A pdd checkpoint.")
@_external_options
@_num_images_option
@click.option("--batch-size", default=250, show_default=True, type=checked("batch_size"), help="Images per batch.")
@click.option("--seed", default=0, show_default=True, type=checked("seed"), help="Image subset.")
@_data_root_option()
@click.option("--out-json", required=True, type=click.Path(dir_okay=False),
              help="Table 1's record (entropy E), then the job's cost record.")
@click.option("--out-csv", required=True, type=click.Path(dir_okay=False),
              help="Per-image L_F, S_b, S_w and gradient angle.")
@_runtime_options
def diversity(model_path: str | None, external: dict | None, num_images: int | None, batch_size: int, seed: int,
              data_root: str, out_json: str, out_csv: str, device: str, threads: int | None) -> None:
    """Ambiguity entropy, discrimination and gradient angles.

    Entropy E (eq. 5) of the ensemble, and per image the discrimination L_F (eq. 6) and the members' gradient
    angles, of a pdd checkpoint (--model) or your own model (--factory ...; without a feature split its L_F,
    S_b and S_w are empty).
    """
    from pdd.devices import select_device
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.evaluation.diversity import ambiguity_entropy, diversity_per_image
    from pdd.evaluation.records import cost_record, entropy_record, per_image_table
    from pdd.io import write_json, write_text

    _outputs(out_json=out_json, out_csv=out_csv)
    _threads(threads)
    dev = select_device(device)
    with CostMeter(device=dev) as cost:
        model, key = _load(model_path, dev, external)
        if model.num_members < 2:
            raise click.ClickException(f"diversity needs an ensemble of K >= 2 members, got K = {model.num_members}")
        x, y = _images(key["dataset"], "test", data_root, num_images, seed)
        stats = diversity_per_image(model, x, y, dev, batch_size)
        entropy = ambiguity_entropy(stats["member_correct"])
    write_json(out_json, [entropy_record(key, entropy, len(y)), cost_record(key, "diversity", cost)])
    write_text(out_csv, per_image_table(key, stats).to_csv(index=False))
    click.echo(f"entropy {entropy:.4f} over {len(y)} images", err=True)


@main.command("time-steps")
@_settings_options(TrainConfig, only=("dataset",))
@click.option("--method", "methods", multiple=True, required=True, type=FIELD_TYPES["method"],
              help="Methods to time; repeatable (the first is the reference of the printed ratios).")
@_settings_options(TrainConfig, only=("members", "arch", "width", "pdd_intervals", "pdd_alpha", "pdd_beta", "seed"),
                   help={"seed": "Seed of the initial weights and of the timed batch."})
@_settings_options(LossSettings)
@_settings_options(TimingSettings)
@_plugins_option
@_data_root_option()
@_out_option("Result JSON to write: seconds per step of each method, then the job's cost record.")
@_runtime_options
def time_steps(dataset: str, methods: tuple[str, ...], members: int, arch: str, width: int, batch_size: int,
               pdd_intervals: int, pdd_alpha: float, pdd_beta: float, steps: int, warmup: int, seed: int,
               data_root: str, out: str, device: str, threads: int | None, **settings: Any) -> None:
    """Seconds per training step of each method.

    The methods' steps are interleaved in one process, so drifts of the machine hit all alike (the `timing`
    table).
    """
    from pdd import data
    from pdd.devices import select_device
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.evaluation.records import cost_record, ensemble_key, step_records
    from pdd.io import write_json
    from pdd.models import EnsembleSpec
    from pdd.step_timing import time_methods

    loss_settings = _settings(LossSettings, **settings)
    _check_intervals(methods, members, pdd_intervals)
    info = data.info(dataset)
    spec = _settings(EnsembleSpec, arch=arch, num_members=members, num_classes=info.num_classes,
                     in_channels=info.in_channels, width=width)
    _outputs(out=out)
    _threads(threads)
    dev = select_device(device)
    key = ensemble_key({"dataset": dataset, "members": members, "method": None, "arch": arch, "seed": seed}, None)
    with CostMeter(device=dev) as cost:
        x, y = _images(dataset, "train", data_root, batch_size, seed)
        pdd = {"num_intervals": pdd_intervals, "alpha": pdd_alpha, "beta": pdd_beta}
        medians = time_methods(list(methods), spec, pdd, loss_settings, x.to(dev), y.to(dev), warmup, steps, seed=seed)
    write_json(out, [*step_records(key, medians, steps, batch_size, str(dev)), cost_record(key, "time-steps", cost)])
    for m, s in medians.items():
        click.echo(f"{m:<14} {s:.4f} s/step  ({s / medians[methods[0]]:.2f}x {methods[0]})", err=True)


@main.command("member-transfer")
@click.option("--model", "model_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A pdd checkpoint.")
@click.option("--eps", type=checked("eps"), required=True, help="L-inf budget of the PGD crafted on each member.")
@_settings_options(AttackSettings, only=("steps", "batch_size", "seed"),
                   help={"steps": "PGD steps (of eps/10, one random start).", "seed": "Image subset and random start."})
@_num_images_option
@_data_root_option()
@_out_option("Result JSON to write: one record per (source, target) member, then the job's cost record.")
@_runtime_options
def member_transfer(model_path: str, eps: float, num_images: int | None, data_root: str, out: str, device: str,
                    threads: int | None, **opts: Any) -> None:
    """Member-to-member transfer of PGD, DVERGE's measure.

    The K x K matrix: % of member j's correct images fooled by PGD crafted on member i.
    """
    from pdd.devices import select_device
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.evaluation.member_transfer import fooling_matrix
    from pdd.evaluation.records import cost_record, fooling_records
    from pdd.io import write_json

    settings = _settings(AttackSettings, **_take(AttackSettings, opts))
    _outputs(out=out)
    _threads(threads)
    dev = select_device(device)
    with CostMeter(device=dev) as cost:
        model, key = _load(model_path, dev)
        x, y = _images(key["dataset"], "test", data_root, num_images, settings.seed)
        matrix = fooling_matrix(model, x, y, eps, settings, dev)
    write_json(out, [*fooling_records(key, eps, matrix.tolist(), len(y)), cost_record(key, "member-transfer", cost)])
    click.echo(f"fooling rates (rows: crafted on member i, columns: scored on member j):\n{matrix}", err=True)


def _method_models(models: tuple[str, ...], device: torch.device) -> tuple[dict, dict]:
    """({method: ensemble}, the first one's record key) from `--model METHOD=CHECKPOINT` options, every checkpoint
    of one dataset and K; one-line errors."""
    found, keys = {}, {}
    for item in models:
        method, sep, path = item.partition("=")
        if not sep or not method or not path:
            raise click.BadParameter(f"expected METHOD=CHECKPOINT, got {item!r}", param_hint="'--model'")
        if not os.path.isfile(path):
            raise click.BadParameter(f"{path}: no such file", param_hint="'--model'")
        found[method], keys[method] = _load(path, device)
    if len({(k["dataset"], k["K"]) for k in keys.values()}) > 1:
        raise click.BadParameter("the checkpoints are of different datasets or K", param_hint="'--model'")
    return found, next(iter(keys.values()))


def _test_image(dataset: str, data_root: str, image: int) -> tuple:
    """(image [C, H, W], label) of test image number `image`, or a one-line error naming the test set's size."""
    split = _split(dataset, "test", data_root)
    if image >= len(split):
        raise click.BadParameter(f"{dataset}'s test set has {len(split)} images, got {image}", param_hint="'--image'")
    x, y = split[image]
    return x, int(y)


_models_option = click.option("--model", "models", multiple=True, required=True, metavar="METHOD=CHECKPOINT",
                              help="An ensemble and the method it shows; repeatable (one row each, in order).")
_image_option = click.option("--image", default=0, show_default=True, type=Checked(Bound(0, integer=True)),
                             help="Index of the test image shown.")


@main.command()
@_models_option
@_image_option
@click.option("--layer", help="Member submodule path of the maps (default: the last stage with maps >= 2x2).")
@click.option("--threshold", type=Checked(Bound(0, 1, high_open=True)),
              help="A map's hot pixels: above this fraction of its maximum (default: the paper's, "
                   "pdd.evaluation.gradcam.THRESHOLD).")
@click.option("--over-images", is_flag=True, help="Also the distance over the test images every ensemble "
              "classifies correctly (--num-images of them, seed 0; all when not given).")
@_num_images_option
@_data_root_option()
@_out_option("Record JSON to write (distances, the job's cost); the maps go to an NPZ beside it.")
@_runtime_options
def gradcam(models: tuple[str, ...], image: int, layer: str | None, threshold: float | None, over_images: bool,
            num_images: int | None, data_root: str, out: str, device: str, threads: int | None) -> None:
    """Figure 1's Grad-CAM of each member of several ensembles.

    The maps of one test image, their hot-pixel centres and the centres' mean pairwise distance.
    """
    from pdd.devices import select_device
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.evaluation.figure1 import figure1_data
    from pdd.evaluation.figure_files import write_figure_data
    from pdd.evaluation.gradcam import THRESHOLD
    from pdd.evaluation.records import COST_FIELDS

    _outputs(out=out)
    _threads(threads)
    dev = select_device(device)
    threshold = THRESHOLD if threshold is None else threshold
    with CostMeter(device=dev) as cost:
        ensembles, key = _method_models(models, dev)
        x, y = _test_image(key["dataset"], data_root, image)
        many = _images(key["dataset"], "test", data_root, num_images, 0) if over_images else None
        record, arrays = figure1_data(ensembles, x, y, image, layer, threshold, many)
    record.update({"dataset": key["dataset"], "K": key["K"], **{f: cost[f] for f in COST_FIELDS}})
    write_figure_data(out, record, arrays)
    click.echo(f"Grad-CAM centre distances: {record['distances']}", err=True)


def _eps_pairs(ctx: click.Context, param: click.Parameter, items: tuple[str, ...]) -> dict[str, float]:
    """{attack: eps} from `--eps ATTACK=EPS` options (pgd: L-inf, pgd_l2: L2), each checked by its attack."""
    found = {}
    for item in items:
        attack, sep, value = item.partition("=")
        if attack not in ("pgd", "pgd_l2") or not sep:
            raise click.BadParameter(f"expected pgd=EPS or pgd_l2=EPS, got {item!r}", param_hint="'--eps'")
        try:
            found[attack] = check_param(attack, float(value), "--eps")
        except (ValueError, InvalidValue) as err:
            raise click.BadParameter(str(err), param_hint="'--eps'") from None
    return found or dict(FIGURE5_EPS)


@main.command()
@_models_option
@_image_option
@click.option("--eps", multiple=True, callback=_eps_pairs, metavar="ATTACK=EPS",
              help="A PGD budget: pgd=EPS (L-inf) or pgd_l2=EPS (L2); repeatable (default: the paper's, "
                   "pdd.plan.figure_jobs.FIGURE5_EPS).")
@click.option("--seed", default=0, show_default=True, type=checked("seed"), help="PGD's random start.")
@_data_root_option()
@_out_option("Record JSON to write (predictions, the job's cost); the images go to an NPZ beside it.")
@_runtime_options
def examples(models: tuple[str, ...], image: int, eps: dict[str, float], seed: int, data_root: str, out: str,
             device: str, threads: int | None) -> None:
    """Figure 5's PGD examples of one test image.

    Crafted on each ensemble at each budget, with the ensemble's prediction of each.
    """
    from pdd.devices import select_device
    from pdd.evaluation.cost_meter import CostMeter
    from pdd.evaluation.figure5 import examples as craft
    from pdd.evaluation.figure5 import figure5_data
    from pdd.evaluation.figure_files import write_figure_data
    from pdd.evaluation.records import COST_FIELDS

    _outputs(out=out)
    _threads(threads)
    dev = select_device(device)
    with CostMeter(device=dev) as cost:
        ensembles, key = _method_models(models, dev)
        x, y = _test_image(key["dataset"], data_root, image)
        record, arrays = figure5_data(craft(ensembles, x, y, eps, seed, dev), image, y)
    record.update({"dataset": key["dataset"], "K": key["K"], "eps": eps, **{f: cost[f] for f in COST_FIELDS}})
    write_figure_data(out, record, arrays)


@main.command()
@click.option("--configfile", default="config/config.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False), help="The workflow config to project (as snakemake's).")
@click.option("--device", "device_name", default="h200", show_default=True, type=Registry(PEAKS, "device"),
              help="Whose data-sheet peak the hours are at (pdd.evaluation.peaks.PEAKS).")
@click.option("--precision", "--dtype", "precision", type=Registry(PRECISIONS, "precision"),
              help="The training jobs' arithmetic, so their peak (the other jobs run in full fp32: the FP32 peak) "
                   "[default: the config's training.precision, tf32 where unset].")
@click.option("--utilisation", type=Checked(Bound(0, 1, low_open=True, meaning="a fraction of the peak")),
              help="Also the hours at this fraction of the peak (e.g. a benchmark's measured fraction).")
@click.option("--rate", type=Checked(Bound(0, low_open=True, meaning="FLOP/s")),
              help="Also the hours at this achieved rate in FLOP/s (bench_gpu.py's or bench_step.py's).")
@click.option("--images", default=2, show_default=True, type=Checked(Bound(2, integer=True)),
              help="Synthetic images per measurement (even: TRS halves the batch).")
@click.option("--cache", default="results/estimate/measurements.json", show_default=True,
              type=click.Path(dir_okay=False), help="Measurements kept between runs, valid while the code is the same.")
@click.option("--no-cache", is_flag=True, help="Measure everything afresh and keep nothing.")
@click.option("--details", is_flag=True, help="Also each group of identical jobs with its arithmetic.")
@click.option("--full-width", is_flag=True,
              help="Measure at the config's widths (minutes at paper width) instead of once at a narrow width with the "
                   "FLOPs scaled exactly.")
@click.option("--threads", type=checked("threads"), help="CPU threads for torch (default: torch's own choice).")
@click.option("--processes", type=Checked(Bound(1, integer=True)), default=None,
              help="Measurements taken at once, one process each  [default: the CPUs this process may use, at most 8]")
def estimate(configfile: str, device_name: str, precision: str | None, utilisation: float | None, rate: float | None,
             images: int, cache: str, no_cache: bool, details: bool, full_width: bool, threads: int | None,
             processes: int | None) -> None:
    """The cost of a config's run before it starts.

    Per rule and in total: model image-passes, FLOPs and hours at a device's data-sheet peak (a floor), at a
    fraction of it, or at a measured rate (`pdd.estimate`; measurements reused from --cache).
    """
    import yaml

    from pdd.estimate import Rate, report
    from pdd.plan.checks import problems, schema_problems

    if images % 2:
        raise click.BadParameter(f"must be even (TRS halves the batch), got {images}", param_hint="'--images'")
    try:
        config = yaml.safe_load(open(configfile).read())
    except yaml.YAMLError as err:
        raise click.BadParameter(f"not YAML: {_one_line(err)}", param_hint="'--configfile'") from None
    schema = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "workflow", "schemas",
                          "config.schema.yaml")
    found = schema_problems(config, schema) if os.path.isfile(schema) else []
    found = found or (problems(config) if isinstance(config, dict) else ["the config must be a mapping of keys"])
    if found:
        raise click.BadParameter("invalid config: " + "; ".join(found), param_hint="'--configfile'")
    _threads(threads)
    precision = precision or config.get("training", {}).get("precision", "tf32")
    rates = [Rate(device_name, precision)]
    if utilisation is not None and utilisation != 1:
        rates.append(Rate(device_name, precision, utilisation))
    if rate is not None:
        rates.append(Rate(rate=rate))
    if processes is None:
        processes = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    click.echo(report(config, configfile, rates, images, None if no_cache else cache, show_details=details,
                      narrow=not full_width, processes=processes))


if __name__ == "__main__":
    sys.exit(main())
