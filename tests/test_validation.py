"""Every bad value is one line before any work: the cases are generated from the click commands' options and the
attack registry (a new option or attack is covered without editing this file), through the CLI in process (the
big table), a few real subprocesses, and the Python API; plus the checks behind them (ranges, outputs, resume
states, config keys, checkpoint messages)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

import pdd.cli as cli
from pdd.cli import Checked, Registry, main
from pdd.evaluation.attacks import ATTACKS
from pdd.io import atomic_path, remove_stale_temporaries, write_json
from pdd.plan.checks import problems, schema_problems, value_problems
from pdd.settings.attacks import check_param
from pdd.validation import Bound, InvalidValue

PARAM_BOUNDS = {name: a.bound for name, a in ATTACKS.items() if a.bound is not None}  # each attack's bound

from conftest import REPO, tiny_config

BAD_NUMBERS = ("nan", "inf", "-inf", "0", "-1")
VALID_OVERRIDES = {"--attack": "pgd", "--method": "baseline", "--dataset": "digits"}


def _numeric_options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and isinstance(p.type, Checked)]


def _valid(param: click.Parameter, dummy: Path) -> str:
    """A value `param` accepts (the rest of a command line whose one bad value is under test)."""
    if param.opts[0] in VALID_OVERRIDES:
        return VALID_OVERRIDES[param.opts[0]]
    if isinstance(param.type, Registry):
        return str(param.type.choices[0])
    if isinstance(param.type, Checked):
        return next(str(v) for v in (0.5, 1, 2, 10) if param.type.bound.problem(
            int(v) if param.type.bound.integer else float(v)) is None and (not param.type.bound.integer or v >= 1))
    if isinstance(param.type, click.Path) and param.type.exists:
        return str(dummy)
    return str(dummy.parent / "out" / param.name)


def _cases() -> list[tuple[str, str, str]]:
    """(command, option, bad value) for every numeric option of every command: NaN, inf and -inf always (no
    option may take them), 0 and -1 where the option's bound refuses them (a seed may be 0)."""
    cases = []
    for name, command in sorted(main.commands.items()):
        for option in _numeric_options(command):
            for text in BAD_NUMBERS:
                value = int(text) if option.type.bound.integer and text in ("0", "-1") else float(text)
                if text in ("nan", "inf", "-inf") or option.type.bound.problem(value) is not None:
                    cases.append((name, option.opts[0], text))
    return cases


def _command_line(name: str, option: str, value: str, tmp: Path) -> list[str]:
    """`pdd NAME` with the bad `value` for `option` first, then every required option valid."""
    dummy = tmp / "dummy.pt"
    dummy.write_bytes(b"")
    command = main.commands[name]
    args = [name, option, value]
    for param in command.params:
        if isinstance(param, click.Option) and param.opts[0] != option and (
                param.required or param.opts[0] in ("--model", "--target")):
            args += [param.opts[0], _valid(param, dummy)]
    return args


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pdd: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_every_numeric_option_is_range_checked() -> None:
    """No option takes a number through click's own types (which accept NaN): each is a `Checked`, so the
    generated table below covers it."""
    raw = (click.types.FloatParamType, click.types.IntParamType)
    unchecked = [f"{name} {p.opts[0]}" for name, command in main.commands.items() for p in command.params
                 if isinstance(p.type, raw) and not isinstance(p.type, Checked)]
    assert unchecked == []
    assert len(_cases()) > 100  # every command's numbers: the table is not silently empty


@pytest.mark.parametrize("name, option, value", _cases())
def test_bad_number_is_one_line_naming_option_and_value(tmp_path: Path, name: str, option: str, value: str) -> None:
    result = CliRunner().invoke(main, _command_line(name, option, value, tmp_path))
    line = _one_error_line(result.stderr)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert option in line, line
    assert {"nan": "nan", "inf": "inf", "-inf": "-inf", "0": "got 0", "-1": "got -1"}[value] in line.lower(), line
    assert not (tmp_path / "out").exists()


def _param_cases() -> list[tuple[str, float]]:
    """(attack, parameter) the attack's bound refuses: NaN, infinities, 0, -1 and just above its upper end."""
    cases = []
    for attack in ATTACKS:
        bound = PARAM_BOUNDS.get(attack)
        if bound is None:
            continue
        values = [0.0, -1.0] + ([bound.high * 1.5] if bound.high else [])
        cases += [(attack, v) for v in [math.nan, math.inf, -math.inf] + [v for v in values if bound.problem(v)]]
    return cases


def test_every_attack_but_none_has_a_parameter_range() -> None:
    assert set(PARAM_BOUNDS) == set(ATTACKS) - {"none"}


@pytest.mark.parametrize("inline", [False, True], ids=["--param", "--attack NAME=P"])
@pytest.mark.parametrize("attack, param", _param_cases())
def test_bad_attack_parameter_is_one_line(tmp_path: Path, attack: str, param: float, inline: bool) -> None:
    dummy = tmp_path / "m.pt"
    dummy.write_bytes(b"")
    given = ["--attack", f"{attack}={param}"] if inline else ["--attack", attack, "--param", str(param)]
    result = CliRunner().invoke(main, ["attack", "--model", str(dummy), *given,
                                       "--out", str(tmp_path / "out" / "r.json")])
    line = _one_error_line(result.stderr)
    assert result.exit_code == 2 and ("--attack" if inline else "--param") in line
    assert str(param).lower().lstrip("-") in line.lower().replace("infinity", "inf"), line
    assert not (tmp_path / "out").exists()


# --- A few real processes: the console script's exit status and stderr ---------------------------------------

def _pdd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdd.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_subprocess_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    paper = str(REPO / "config" / "paper_results.csv")
    out = tmp_path / "out"
    bad = tmp_path / "bad.json"
    bad.write_text('[{"dataset": "digits"}]')
    cases = [  # each process costs seconds (torch's import): the in-process table above covers the rest
        (["attack", "--model", paper, "--attack", "cw", "--param", "nan", "--out", f"{out}/r.json"], 2, "--param"),
        (["table", "--name", "table1_entropy", "--paper", paper, "--out", f"{out}/t", str(bad)], 1, "table1_entropy"),
    ]
    for args, status, named in cases:
        proc = _pdd(*args)
        line = _one_error_line(proc.stderr)
        assert proc.returncode == status and named in line, (args, proc.returncode, proc.stderr)
        assert proc.stdout == "" and not out.exists()
    debug = _pdd(*cases[-1][0], env={"PDD_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# --- The Python API: the same checks, ValueErrors naming the argument, before the model runs ------------------

class Foreign:
    """A class a data-only loader must refuse to rebuild."""


class Untouchable(nn.Module):
    """A model that fails the test if it is ever run: the checks must come first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the model ran before the values were checked")


API_CASES = [
    ({"num_images": 0}, "num_images", "got 0"),
    ({"num_images": -3}, "num_images", "got -3"),
    ({"num_images": math.nan}, "num_images", "nan"),
    ({"attacks": {"pgd": [math.nan]}}, "attacks['pgd']", "nan"),
    ({"attacks": {"fgsm": [math.inf]}}, "attacks['fgsm']", "infinity"),
    ({"attacks": {"pgd": [1.5]}}, "attacks['pgd']", "1.5"),
    ({"attacks": {"jsma": [1.5]}}, "attacks['jsma']", "1.5"),
    ({"attacks": {"cw": [0.0]}}, "attacks['cw']", "got 0"),
    ({"settings": {"steps": 0}}, "steps", "got 0"),
    ({"settings": {"step_fraction": math.nan}}, "step_fraction", "nan"),
    ({"settings": {"stepz": 3}}, "stepz", "did you mean 'steps'"),
    ({"strong": {"eps": [math.nan]}}, "strong['eps']", "nan"),
    ({"strong": {"eps": [0.1], "apgd_iterations": 0}}, "apgd_iterations", "got 0"),
    ({"strong": {"eps": [0.1], "diagnostic_eps": math.inf}}, "diagnostic_eps", "infinity"),
]


@pytest.mark.parametrize("kwargs, name, value", API_CASES)
def test_api_refuses_bad_values_before_any_work(kwargs: dict, name: str, value: str) -> None:
    from pdd.api import evaluate

    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError) as info:
        evaluate([Untouchable(), Untouchable()], (x, y), **kwargs)
    message = str(info.value)
    assert name in message and value in message.lower(), message
    assert "\n" not in message


def test_api_model_that_does_not_fit_the_images_is_one_message() -> None:
    from pdd.api import evaluate

    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    members = [nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)) for _ in range(2)]  # CIFAR-shaped
    with pytest.raises(ValueError, match=r"member 0 fails on the dataset's images \[1, 8, 8\]"):
        evaluate(members, (x, y))


# --- The checks behind them ------------------------------------------------------------------------------------

def test_bound_names_nan_and_infinities_and_ends() -> None:
    eps = Bound(0, 1, low_open=True)
    assert eps.problem(math.nan) == "must be a finite number in (0, 1], got NaN"
    assert eps.problem(-math.inf).endswith("got -infinity")
    assert eps.problem(0.0) is not None and eps.problem(1.0) is None and eps.problem(1e-9) is None
    assert Bound(1, integer=True).problem(1) is None and Bound(1, integer=True).problem(1.0) is not None
    assert Bound(0).problem(True) is not None  # a bool is not a number here
    with pytest.raises(InvalidValue, match="jsma"):
        check_param("jsma", 1.01)


def test_outputs_are_written_with_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", [1])
        os.umask(0o027)
        write_json(tmp_path / "b.json", [1])
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644   # 0666 & ~022
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640   # 0666 & ~027


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    with atomic_path(out) as live:          # this process's own temporary: alive
        host_pid = live.name[len(out.name) + 2:].split(".")[0]
        host = host_pid.rpartition("-")[0]
        dead = tmp_path / f".r.json.{host}-{2**22 + 12345}.abc.tmp"   # above Linux's default pid_max
        other_old = tmp_path / ".r.json.otherhost-7.abc.tmp"
        other_new = tmp_path / ".r.json.otherhost-8.abc.tmp"
        unrelated = tmp_path / ".s.json.x-1.abc.tmp"
        for p in (dead, other_old, other_new, unrelated):
            p.write_text("")
        os.utime(other_old, (0, 0))
        removed = remove_stale_temporaries(out)
        assert sorted(removed) == sorted([dead, other_old])
        assert live.exists() and other_new.exists() and unrelated.exists()
        live.write_text("[]")
    assert out.read_text() == "[]"


def test_two_outputs_on_one_path_and_unwritable_folders_are_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    dummy = tmp_path / "m.pt"
    dummy.write_bytes(b"")
    same = CliRunner().invoke(main, ["diversity", "--model", str(dummy), "--out-json", str(tmp_path / "d"),
                                     "--out-csv", str(tmp_path / "d")])
    assert same.exit_code == 2 and "--out-json and --out-csv" in _one_error_line(same.stderr)
    blocked = CliRunner().invoke(main, ["attack", "--model", str(dummy), "--attack", "none", "--out",
                                        str(blocker / "sub" / "r.json")])
    assert blocked.exit_code == 1 and "--out" in _one_error_line(blocked.stderr)


def test_surrogate_of_another_dataset_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(cli, "_load", lambda path, device, *a: (None, {"dataset": "fashion_mnist"}))
    with pytest.raises(click.BadParameter, match="trained on 'fashion_mnist'.*evaluated on 'digits'"):
        cli._load_surrogate("s.pt", torch.device("cpu"), {"dataset": "digits"})


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated; the file is still a user's
def test_checkpoint_messages_never_suggest_weights_only_false(tmp_path: Path) -> None:
    from pdd.evaluation.external import read_weights
    from pdd.models import CheckpointError, read_checkpoint

    scripted = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.trace(nn.Linear(2, 2), torch.zeros(1, 2)), scripted)
    pickled = tmp_path / "obj.pt"
    torch.save({"x": Foreign()}, pickled)
    for path in (scripted, pickled):
        for read in (read_checkpoint, read_weights):
            with pytest.raises((CheckpointError, ValueError)) as info:
                read(path)
            assert "weights_only" not in str(info.value), str(info.value)
            assert "TorchScript" in str(info.value) or "Foreign" in str(info.value), str(info.value)


def test_config_errors_all_at_once_with_the_closest_key() -> None:
    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    cfg = tiny_config()
    cfg["seed"] = cfg.pop("seeds")
    cfg["training"]["lrr"] = 0.1
    found = schema_problems(cfg, schema)
    assert "seed: unknown key; did you mean `seeds`?" in found
    assert "training.lrr: unknown key; did you mean `lr`?" in found
    assert all(len(line) < 300 for line in found) and len(found) <= 4  # no schema or config dump


def test_config_values_are_checked_with_the_cli_ranges() -> None:
    cfg = tiny_config()
    cfg["training"]["lr"] = float("nan")
    cfg["attacks"]["digits"]["pgd"] = [1.5]
    cfg["evaluation"]["cw"]["max_iter"] = 0
    cfg["strong_evaluation"]["eps"]["digits"] = [float("inf")]
    found = value_problems(cfg)
    assert "training.lr: must be a finite number > 0, got NaN" in found
    assert any(line.startswith("attacks.digits.pgd: pgd:") and "got 1.5" in line for line in found)
    assert any(line.startswith("evaluation.cw.max_iter:") for line in found)
    assert any(line.startswith("strong_evaluation.eps.digits:") and "infinity" in line for line in found)
    assert set(found) <= set(problems(cfg))
    assert value_problems(tiny_config()) == []
    for name in ("config.yaml", "demo.yaml", "fashion_mnist_cpu.yaml"):
        assert value_problems(yaml.safe_load((REPO / "config" / name).read_text())) == [], name


def test_table_inputs_are_complete_text_and_checkpoints_pass(tmp_path: Path) -> None:
    """A binary or truncated JSON input is one line naming it; a checkpoint (Grad-CAM's input) is the builder's."""
    paper = str(REPO / "config" / "paper_results.csv")
    binary, truncated, model = tmp_path / "binary.json", tmp_path / "truncated.json", tmp_path / "m.pt"
    binary.write_bytes(bytes(range(256)))
    truncated.write_text('[{"dataset": ')
    model.write_bytes(bytes(range(256)))
    for path, expected in ((binary, "binary.json is not a text file"), (truncated, "truncated.json is not complete")):
        result = CliRunner().invoke(main, ["table", "--name", "table1_entropy", "--paper", paper, "--out",
                                           str(tmp_path / "out" / "t"), str(path)])
        assert result.exit_code == 2 and expected in _one_error_line(result.stderr)
    from pdd.report_cli import _check_input

    _check_input(str(model))  # not refused here


def test_launcher_sends_exactly_report_clis_commands_there() -> None:
    """The console script names the torch-free commands before importing them: the same names as pdd.report_cli's."""
    from pdd import launcher, report_cli

    assert set(launcher.REPORTS) == {command.name for command in report_cli.REPORTS}


def test_debug_flag_and_env_show_tracebacks(monkeypatch) -> None:
    from pdd import report_cli

    monkeypatch.setattr(report_cli, "_build_output", lambda *a: (_ for _ in ()).throw(KeyError("boom")))
    args = ["table", "--name", "table1_entropy", "--paper", str(REPO / "config" / "paper_results.csv"), "--out", "t"]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 1 and "KeyError: 'boom'" in _one_error_line(plain.stderr)
    assert isinstance(CliRunner().invoke(main, ["--debug", *args]).exception, KeyError)
    monkeypatch.setenv("PDD_DEBUG", "1")
    assert isinstance(CliRunner().invoke(main, args).exception, KeyError)


# --- Training: a NaN loss stops the job; a damaged resume state is set aside ----------------------------------

def _tiny(epochs: int):
    from pdd.training import TrainConfig

    return TrainConfig(dataset="digits", method="baseline", members=2, width=2, epochs=epochs, batch_size=256)


def test_nan_loss_stops_training_at_once_keeping_the_last_good_state(tmp_path: Path, monkeypatch) -> None:
    from pdd import data, training

    steps_per_epoch = len(data.get_dataset("digits", "train", tmp_path)) // 256   # drop_last: full batches only
    real = training.get_method

    def poisoned(name, settings=None):
        """The real method, whose loss is NaN at the second step of the second epoch."""
        method, calls = real(name, settings), []
        step = method.step

        def step_then_nan(*args):
            loss, logits = step(*args)
            calls.append(1)
            return (math.nan if len(calls) == steps_per_epoch + 2 else loss), logits

        method.step = step_then_nan
        return method

    monkeypatch.setattr(training, "get_method", poisoned)
    out = tmp_path / "m.pt"
    with pytest.raises(training.TrainingDiverged, match="loss became nan at epoch 2, step 2"):
        training.train(_tiny(2), tmp_path, out, tmp_path / "log.csv")
    state = torch.load(out.with_name("m.pt.state"), weights_only=True)
    assert len(state["log"]) == 1 and not out.exists()              # epoch 1's state kept, no final model


@pytest.mark.parametrize("damaged", ["list", "config", "log"])
def test_damaged_resume_state_is_set_aside(tmp_path: Path, capsys, damaged) -> None:
    from dataclasses import asdict

    from pdd import training

    cfg = _tiny(1)
    cfg_dict = json.loads(json.dumps(asdict(cfg)))
    state = {"list": [1, 2],                                                     # not a state at all
             "config": {"train_config": cfg_dict, "model": {"x": 1}},             # keys missing
             "log": {"train_config": cfg_dict, "model": {}, "log": "x", "rng": {}}}[damaged]
    out = tmp_path / "m.pt"
    torch.save(state, out.with_name("m.pt.state"))
    training.train(cfg, tmp_path, out, tmp_path / "log.csv")
    assert out.exists() and out.with_name("m.pt.state.damaged").exists()
    err = capsys.readouterr().err
    assert "m.pt.state is damaged" in err and "training from the start" in err


def test_api_labels_past_the_model_classes_are_refused() -> None:
    from pdd.api import evaluate

    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 12])
    members = [nn.Sequential(nn.Flatten(), nn.Linear(64, 10)) for _ in range(2)]
    with pytest.raises(ValueError, match="label 12 is past the model's 10 classes"):
        evaluate(members, (x, y))


@pytest.mark.parametrize("args", [[], ["--help"], ["--version"]])
def test_quick_help_is_exactly_the_cli_help(args: list[str]) -> None:
    """The console script answers these from pdd.launcher's table (no torch import): the same bytes as pdd.cli."""
    from pdd.launcher import QUICK, help_group

    assert args in QUICK
    quick = CliRunner().invoke(help_group(), args, prog_name="pdd")
    full = CliRunner().invoke(main, args, prog_name="pdd")
    assert (quick.output, quick.exit_code) == (full.output, full.exit_code)


@pytest.mark.parametrize("command", ["table", "figure", "model-card"])
def test_report_commands_run_without_torch_and_as_pdd_cli(command: str, tmp_path: Path) -> None:
    """The console script sends the report commands to pdd.report_cli, which imports no torch (a second or more
    per report job); they are the same commands as pdd.cli's: the same help, the same one-line errors."""
    from pdd import report_cli

    code = ("import sys\nsys.argv = ['pdd', %r, '--help']\nfrom pdd.launcher import main\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nprint('torch imported:', 'torch' in sys.modules)" % command)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path).stdout
    assert out.endswith("torch imported: False\n") and f"Usage: pdd {command} [OPTIONS]" in out
    for args in (["--help"], ["--out", str(tmp_path / "x")]):
        light = CliRunner().invoke(report_cli.main, [command, *args], prog_name="pdd")
        full = CliRunner().invoke(main, [command, *args], prog_name="pdd")
        assert (light.output, light.exit_code) == (full.output, full.exit_code)
