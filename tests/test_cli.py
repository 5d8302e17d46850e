"""The command line: bad values are one-line usage errors before any work, defaults come from the dataclasses,
every flag the workflow passes parses, records share one key, and every job writes its cost."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from pdd.cli import _settings_options, main
from pdd.evaluation.attacks import AttackSettings
from pdd.evaluation.records import (
    COST_FIELDS,
    KEY,
    attack_record,
    cost_record,
    ensemble_key,
    entropy_record,
    fooling_records,
    per_image_table,
)
from pdd.evaluation.strong import StrongSettings
from pdd.methods import LossSettings
from pdd.reports.cost_table import own_cost
from pdd.reports.tables import read_results
from pdd.training import TrainConfig

from conftest import REPO, SNAKEFILE

N = 12  # test images per evaluation


def invoke(*args) -> click.testing.Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def cli(*args) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def read(path: Path) -> list[dict]:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A K = 2 digits ensemble trained one epoch by `pdd train --cost` (paths: model, log, cost, root)."""
    root = tmp_path_factory.mktemp("cli")
    paths = {"model": root / "m.pt", "log": root / "log.csv", "cost": root / "cost.json", "root": root}
    cli("train", "--dataset", "digits", "--method", "baseline", "-k", 2, "--width", 2, "--epochs", 1,
        "--data-root", root, "--device", "cpu", "--threads", 1, "--out", paths["model"], "--log", paths["log"],
        "--cost", paths["cost"])
    return paths


# --- Bad values: one line naming the option, before any work --------------------------------------------------

def _bad_cases(model: str) -> list[tuple[list[str], str]]:
    """(arguments of a command that must be refused, the option its error names)."""
    attack = ["attack", "--model", model, "--out", "{out}", "--device", "cpu"]
    pgd = [*attack, "--attack", "pgd"]
    strong = ["strong", "--model", model, "--out", "{out}", "--device", "cpu"]
    train = ["train", "--dataset", "digits", "--method", "baseline", "-k", "2", "--out", "{out}", "--log", "{out}.csv"]
    timing = ["time-steps", "--dataset", "digits", "--method", "baseline", "-k", "2", "--out", "{out}"]
    member = ["member-transfer", "--model", model, "--out", "{out}", "--device", "cpu"]
    diversity = ["diversity", "--model", model, "--out-json", "{out}", "--out-csv", "{out}.csv"]
    transfer = ["transfer", "--surrogate", model, "--target", model, "--out", "{out}", "--attack", "fgsm",
                "--param", "0.1"]
    return [
        ([*pgd, "--param", "-0.1"], "--param"),                       # negative eps
        ([*attack, "--attack", "jsma", "--param", "-0.5"], "--param"),  # negative gamma
        ([*attack, "--attack", "jsma", "--param", "1.5"], "--param"),   # gamma above 1
        ([*attack, "--attack", "cw", "--param", "-1"], "--param"),      # negative c
        ([*attack, "--attack", "none", "--param", "0.1"], "--param"),   # 'none' takes no parameter
        ([*pgd], "--param"),                                            # pgd needs one
        ([*attack, "--attack", "pgdd", "--param", "0.1"], "--attack"),
        ([*pgd, "--param", "0.1", "--steps", "0"], "--steps"),
        ([*pgd, "--param", "0.1", "--random-starts", "0"], "--random-starts"),
        ([*pgd, "--param", "0.1", "--step-fraction", "0"], "--step-fraction"),
        ([*pgd, "--param", "0.1", "--num-images", "0"], "--num-images"),
        ([*pgd, "--param", "0.1", "--batch-size", "-5"], "--batch-size"),
        ([*pgd, "--param", "0.1", "--cw-max-iter", "0"], "--cw-max-iter"),
        ([*pgd, "--param", "0.1", "--threads", "0"], "--threads"),
        ([*transfer, "--threat", "whitebox"], "--threat"),
        ([*strong, "--eps", "-0.1"], "--eps"),
        ([*strong, "--eps", "0.1", "--apgd-iterations", "0"], "--apgd-iterations"),
        ([*strong, "--eps", "0.1", "--apgd-restarts", "0"], "--apgd-restarts"),
        ([*strong, "--eps", "0.1", "--pgd-restarts", "0"], "--pgd-restarts"),
        ([*strong, "--eps", "0.1", "--pgd-steps", "0"], "--pgd-steps"),
        ([*strong, "--eps", "0.1", "--pgd-steps", "10", "--pgd-steps", "10"], "pgd_steps"),
        ([*strong, "--eps", "0.1", "--diagnostic-eps", "-1"], "--diagnostic-eps"),
        ([*train, "--members", "1"], "--members"),
        (["train", "--dataset", "mnist", "--method", "baseline", "-k", "2", "--out", "{out}", "--log", "l.csv"],
         "--dataset"),
        (["train", "--dataset", "digits", "--method", "magic", "-k", "2", "--out", "{out}", "--log", "l.csv"],
         "--method"),
        ([*train, "--arch", "resnet50"], "--arch"),
        ([*train, "--epochs", "0"], "--epochs"),
        ([*train, "--batch-size", "0"], "--batch-size"),
        ([*train, "--deg-lambda", "-0.01"], "--deg-lambda"),
        ([*train, "--adv-steps", "0"], "--adv-steps"),
        ([*train, "--pdd-alpha", "1.5"], "--pdd-alpha"),
        ([*train, "--trs-init-eps", "0.1", "--trs-adv-eps", "0.05"], "trs_init_eps"),
        (["train", "--dataset", "digits", "--method", "pdd", "-k", "3", "--pdd-intervals", "3", "--out", "{out}",
          "--log", "{out}.csv"], "--pdd-intervals"),                   # PDD needs M > K
        ([*timing, "--members", "1"], "--members"),
        ([*timing, "--steps", "0"], "--steps"),
        ([*timing, "--method", "pdd", "--pdd-intervals", "2"], "--pdd-intervals"),
        ([*member, "--eps", "-0.1"], "--eps"),
        ([*member, "--eps", "0.1", "--steps", "0"], "--steps"),
        ([*diversity, "--batch-size", "0"], "--batch-size"),
        ([*diversity, "--num-images", "-1"], "--num-images"),
        (["prepare-data", "--dataset", "mnist", "--out", "{out}"], "--dataset"),
        (["attack", "--factory", "m:f", "--dataset", "mnist", "--name", "x", "--attack", "none", "--out", "{out}"],
         "--dataset"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases("m.pt"))))
def test_bad_values_are_one_line_usage_errors_before_any_work(trained, tmp_path, case: int) -> None:
    args, option = _bad_cases(str(trained["model"]))[case]
    out = tmp_path / "out" / "result.json"
    result = invoke(*[a.replace("{out}", str(out)) for a in args])
    errors = [line for line in result.output.splitlines() if line.startswith("pdd: error:")]
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert isinstance(result.exception, SystemExit)
    assert len(errors) == 1 and option in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()                             # nothing written, not even the folder


@pytest.mark.parametrize("kind, name", [("table", "unknown"), ("figure", "table2_whitebox_k3")])
def test_unknown_output_name_is_one_line(tmp_path, kind: str, name: str) -> None:
    result = invoke(kind, "--name", name, "--paper", REPO / "config" / "paper_results.csv", "--out", tmp_path / "t")
    errors = [line for line in result.output.splitlines() if line.startswith("pdd: error:")]
    assert result.exit_code == 2 and len(errors) == 1
    assert f"unknown {kind} {name!r}" in errors[0] and "--name" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_pdd_intervals_need_only_exceed_k_for_pdd_methods(tmp_path) -> None:
    """M <= K is refused for PDD only: the baseline ignores M, so the same values time fine."""
    out = tmp_path / "timing.json"
    args = ["time-steps", "--dataset", "digits", "-k", "2", "--pdd-intervals", "2", "--width", "2", "--batch-size",
            "8", "--steps", "1", "--warmup", "0", "--data-root", tmp_path, "--device", "cpu", "--out", out]
    cli(*args, "--method", "baseline")
    records = read(out)
    assert [r["method"] for r in records if r["metric"] == "seconds_per_step"] == ["baseline"]
    assert invoke(*args, "--method", "baseline", "--method", "pdd").exit_code == 2


# --- One home for each default ---------------------------------------------------------------------------------

def _defaults(command: str) -> dict:
    return {p.name: p.default for p in main.commands[command].params if isinstance(p, click.Option)}


@pytest.mark.parametrize("command, classes, only", [
    ("train", (TrainConfig, LossSettings), None),
    ("attack", (AttackSettings,), None),
    ("transfer", (AttackSettings,), None),
    ("strong", (StrongSettings,), None),
    ("member-transfer", (AttackSettings,), {"steps", "batch_size", "seed"}),
    ("time-steps", (TrainConfig, LossSettings), {"members", "arch", "width", "batch_size", "pdd_intervals", "pdd_alpha",
                                                 "pdd_beta", "seed", *(f.name for f in fields(LossSettings))}),
])
def test_option_defaults_are_the_dataclass_defaults(command: str, classes: tuple, only: set | None) -> None:
    defaults = _defaults(command)
    expected = {f.name: None if f.default is MISSING else f.default for cls in classes for f in fields(cls)
                if f.name != "loss_settings" and (only is None or f.name in only)}
    assert {name: defaults[name] for name in expected} == expected


def test_settings_options_follow_any_dataclass() -> None:
    """Defaults, types, ranges and flags come from the dataclass: a changed default is the option's default."""

    @dataclass(frozen=True)
    class Demo:
        rounds: int = 3
        rate: float = 0.25
        noisy: bool = False
        sizes: tuple[int, ...] = (2, 4)

    @click.command()
    @_settings_options(Demo)
    def demo(**opts) -> None:
        click.echo(json.dumps(opts, sort_keys=True))

    run = CliRunner().invoke
    assert json.loads(run(demo, []).output) == {"noisy": False, "rate": 0.25, "rounds": 3, "sizes": [2, 4]}
    assert json.loads(run(demo, ["--rounds", "5", "--noisy", "--sizes", "7"]).output)["sizes"] == [7]
    for bad in (["--rounds", "0"], ["--rate", "-1"], ["--sizes", "0"]):
        assert run(demo, bad).exit_code == 2


def test_pdd_alpha_default_lives_in_train_config_only() -> None:
    source = (REPO / "pdd" / "cli.py").read_text()
    assert "0.9" not in source
    assert _defaults("train")["pdd_alpha"] == TrainConfig.pdd_alpha == _defaults("time-steps")["pdd_alpha"]


# --- Help ------------------------------------------------------------------------------------------------------

def test_every_command_summary_is_a_complete_sentence() -> None:
    listing = cli("--help")
    for name, command in main.commands.items():
        first = command.help.strip().splitlines()[0]
        assert first.endswith(".") and f"{name:<16} {first}" in listing, (name, first)


def test_device_and_threads_have_help_everywhere() -> None:
    for name, command in main.commands.items():
        for param in command.params:
            if param.name in ("device", "threads", "data_root", "out", "seed", "num_images"):
                assert param.help, f"pdd {name} {param.opts[0]} has no help"


# --- Every flag the workflow passes ----------------------------------------------------------------------------

def _workflow_commands(tmp_path: Path) -> list[list[str]]:
    """The `pdd ...` shell commands of the demo run (a dry run prints them), as argument lists."""
    proc = subprocess.run(["snakemake", "-s", str(SNAKEFILE), "--cores", "1", "all", "-n", "-p", "--configfile",
                           str(REPO / "config" / "demo.yaml")], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [line.split("Shell command: ", 1)[1] for line in proc.stdout.splitlines() if "Shell command: pdd " in line]
    return [shlex.split(line.split(" > ")[0])[1:] for line in lines]


def test_every_flag_the_workflow_passes_parses(tmp_path) -> None:
    """Each `pdd` command of the demo DAG: known options only, every required one given, every value of its
    type and range (paths are not checked: a dry run has no files)."""
    commands = _workflow_commands(tmp_path)
    # the demo uses every command but `estimate` (run by the user before a run, not a workflow stage)
    assert {c[0] for c in commands} == set(main.commands) - {"estimate"}
    for name, *args in commands:
        command = main.commands[name]
        ctx = click.Context(command, info_name=name)
        opts, _, _ = command.make_parser(ctx).parse_args(args)        # raises on an unknown option
        for param in command.params:
            value = opts.get(param.name)
            if param.required and value is None and param.name != "inputs":
                raise AssertionError(f"pdd {name}: {param.opts[0]} missing in {shlex.join(args)}")
            if value is not None and not isinstance(param.type, click.Path):
                param.type_cast_value(ctx, value)                      # raises on a bad value
        if name in ("table", "figure"):
            assert isinstance(json.loads(opts["spec"]), dict)


# --- Records and costs -----------------------------------------------------------------------------------------

def test_ensemble_key_and_records() -> None:
    config = {"dataset": "digits", "members": 3, "method": "pdd", "arch": "resnet18", "seed": 2, "width": 4}
    key = ensemble_key(config, "m.pt", "s.pt")
    assert key == {"dataset": "digits", "K": 3, "method": "pdd", "arch": "resnet18", "seed": 2, "model": "m.pt",
                   "surrogate": "s.pt"}
    assert tuple(key) == KEY and ensemble_key(config, "m.pt")["surrogate"] is None
    with pytest.raises(ValueError, match="lacks arch"):
        ensemble_key({k: v for k, v in config.items() if k != "arch"}, "m.pt")
    result = {"clean_accuracy": 90.0, "accuracy_on_correct": 40.0, "n_images": 10}
    assert attack_record(key, "whitebox", "none", None, result)["value"] == 90.0
    pgd = attack_record(key, "whitebox", "pgd", 0.1, result)
    assert (pgd["value"], pgd["param"], pgd["metric"], pgd["n_images"]) == (40.0, 0.1, "accuracy_pct", 10)
    assert entropy_record(key, 0.25, 10)["value"] == 0.25
    fooled = fooling_records(key, 0.1, [[100.0, 20.0], [30.0, 90.0]], 10)
    assert [(r["source"], r["target"], r["value"]) for r in fooled] == [(0, 0, 100.0), (0, 1, 20.0), (1, 0, 30.0),
                                                                         (1, 1, 90.0)]
    cost = dict(seconds=1.5, forward_images=10, backward_images=4, peak_rss_mb=100.0, peak_gpu_mb=None)
    record = cost_record(key, "attack", cost)
    assert {k: record[k] for k in ("threat", "attack", "param", "metric", "value")} == {
        "threat": "cost", "attack": "attack", "param": None, "metric": "cost", "value": 1.5}
    assert {k: record[k] for k in COST_FIELDS} == cost
    with pytest.raises(ValueError, match="forward_images"):
        cost_record(key, "attack", {"seconds": 1.0})


def test_per_image_table_names_the_ensemble() -> None:
    stats = {"correct": torch.tensor([True, False]), "member_correct": torch.tensor([[True, False], [True, True]]),
             **{k: torch.tensor([0.5, 1.5]) for k in ("fisher", "between", "within", "angle", "cosine")}}
    key = ensemble_key({"dataset": "digits", "members": 2, "method": "pdd", "arch": "resnet18", "seed": 1}, "m.pt")
    frame = per_image_table(key, stats)
    assert list(frame.columns[:5]) == ["dataset", "K", "method", "seed", "image"]
    assert frame["members_correct"].tolist() == [2, 1] and (frame["method"] == "pdd").all()


def test_train_writes_its_cost(trained) -> None:
    cost = json.loads(trained["cost"].read_text())
    assert set(cost) == set(COST_FIELDS)
    train_images = 1797 - 360  # the digits training split: one epoch of forwards and backwards, then the test pass
    assert cost["forward_images"] >= train_images and cost["backward_images"] >= train_images - 64
    assert cost["seconds"] > 0 and cost["peak_gpu_mb"] is None


def test_attack_writes_a_cost_record_and_shares_the_key(trained, tmp_path) -> None:
    common = ["--model", trained["model"], "--num-images", N, "--data-root", trained["root"], "--device", "cpu"]
    cli("attack", *common, "--attack", "pgd", "--param", "0.1", "--param", "0.2", "--steps", 2,
        "--out", tmp_path / "pgd.json")
    records = read(tmp_path / "pgd.json")
    assert [r["metric"] for r in records] == ["accuracy_pct", "accuracy_pct", "cost"]
    cost = records[-1]
    assert (cost["threat"], cost["attack"], cost["param"], cost["value"]) == ("cost", "attack", None, cost["seconds"])
    assert cost["forward_images"] >= N and cost["backward_images"] > 0
    assert own_cost(tmp_path / "pgd.json") == cost                     # what the cost table reads
    assert len(read_results([tmp_path / "pgd.json"])) == 2             # what the tables read
    cli("diversity", *common, "--out-json", tmp_path / "d.json", "--out-csv", tmp_path / "d.csv")
    cli("member-transfer", *common, "--eps", 0.1, "--steps", 2, "--out", tmp_path / "mt.json")
    key = {k: records[0][k] for k in KEY}
    assert key["arch"] == "resnet18" and key["model"] == str(trained["model"]) and key["surrogate"] is None
    for name, command in (("d.json", "diversity"), ("mt.json", "member-transfer")):
        found = read(tmp_path / name)
        assert all({k: r[k] for k in KEY} == key for r in found), name  # one key for every command's records
        assert found[-1]["metric"] == "cost" and found[-1]["attack"] == command
        assert set(COST_FIELDS) <= set(found[-1]) and found[-1]["seconds"] > 0
    # Member transfer runs single members, which CostMeter does not count (only whole-ensemble calls).
    assert read(tmp_path / "d.json")[-1]["forward_images"] >= N
    assert sum(r["metric"] == "fooling_pct" for r in read(tmp_path / "mt.json")) == 4


def test_transfer_and_strong_records_carry_their_cost(trained, tmp_path) -> None:
    common = ["--num-images", N, "--data-root", trained["root"], "--device", "cpu"]
    cli("transfer", "--surrogate", trained["model"], "--target", trained["model"], "--threat", "blackbox_oblivious",
        "--attack", "fgsm", "--param", "0.1", *common, "--out", tmp_path / "t.json")
    transfer = read(tmp_path / "t.json")
    assert transfer[0]["surrogate"] == str(trained["model"]) and transfer[-1]["attack"] == "transfer"
    # The target classifies all N once; the surrogate crafts (forward + backward) only on the c images the target
    # gets right, and the target scores those c again: at least N + 2c forward, c backward.
    c = transfer[0]["n_clean_correct"]
    assert c > 0 and transfer[-1]["forward_images"] >= N + 2 * c and transfer[-1]["backward_images"] >= c
    cli("strong", "--model", trained["model"], "--eps", 0.1, "--apgd-iterations", 2, "--apgd-restarts", 1,
        "--pgd-steps", 2, "--pgd-steps", 3, "--pgd-restarts", 1, "--transfer-steps", 2, "--diagnostic-steps", 2,
        "--apgd-targets", 2, "--mora-iterations", 2, "--square-queries", 5, *common, "--out", tmp_path / "s.json")
    strong = read(tmp_path / "s.json")
    assert [r["metric"] for r in strong].count("cost") == 1 and strong[-1]["attack"] == "strong"
    assert strong[-1]["backward_images"] > 0
    assert all(r["arch"] == "resnet18" and r["model"] == str(trained["model"]) for r in strong)
