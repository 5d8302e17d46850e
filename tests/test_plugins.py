"""Training methods from outside the package: the manual's example defence loaded from a file, a module and an
entry point, the config checks' one-line errors, the job commands and the code fingerprint of its jobs."""

from __future__ import annotations

import importlib.metadata
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from pdd import methods as registry
from pdd.methods import BUILTIN, METHODS, PLUGINS, PluginError, TrainingMethod, get_method
from pdd.methods import plugins as loader
from pdd.plan import config as plan
from pdd.plan.checks import problems
from pdd.training import same_training

from conftest import REPO, tiny_config


def readme_example() -> str:
    """The manual's worked example, `defences/mydefence.py` (the first Python block of 'Adding a defence' in
    docs/extending.md)."""
    section = (REPO / "docs" / "extending.md").read_text().split("## Adding a defence", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(autouse=True)
def clean_registry():
    """Each test starts and ends with the built-in methods only (registration is process-wide)."""
    methods, plugins = dict(METHODS), dict(PLUGINS)
    yield
    METHODS.clear()
    METHODS.update(methods)
    PLUGINS.clear()
    PLUGINS.update(plugins)
    for name in [m for m in sys.modules if m.startswith(("pdd_plugin_", "mypkg"))]:
        del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's project as the working directory: the manual's defence as a file and as package `mypkg`."""
    (tmp_path / "defences").mkdir()
    (tmp_path / "defences" / "mydefence.py").write_text(readme_example())
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "defences.py").write_text(readme_example() + "\n\nNOT_A_CLASS = 3\n\n\nclass Other:\n"
                                                    "    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


class FixedLogits:
    """A stand-in ensemble whose forward returns fixed member logits [K, B, L] (a leaf that gets .grad)."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits.clone().requires_grad_(True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def example_loss(method: TrainingMethod) -> float:
    """The example's loss on K=2 members, one image of class 0, 3 classes, worked out by hand:
    member 0 logits (0, 0, 0): p = (1/3, 1/3, 1/3), CE = ln 3, wrong-class p = (0, 1/3, 1/3) -> unit (0, 1, 1)/sqrt 2;
    member 1 logits (ln 2, ln 2, 0): p = (2/5, 2/5, 1/5), CE = ln 2.5, wrong-class p (0, 2/5, 1/5) -> (0, 2, 1)/sqrt 5;
    cos = 3 / sqrt 10, the one pair's similarity; L_ECE = (ln 3 + ln 2.5) / 2."""
    model = FixedLogits(torch.tensor([[[0.0, 0.0, 0.0]], [[math.log(2), math.log(2), 0.0]]]))
    loss, logits = method.backward(model, torch.zeros(1, 1), torch.tensor([0]))
    assert logits.shape == (2, 1, 3) and model.logits.grad is not None
    return loss


def hand_loss(strength: float) -> float:
    return (math.log(3) + math.log(2.5)) / 2 + strength * 3 / math.sqrt(10)


def test_a_file_entry_trains_with_its_settings(project: Path) -> None:
    cfg = tiny_config()
    cfg["methods"] = {"mydefence": {"file": "defences/mydefence.py", "class": "MyDefence",
                                    "settings": {"strength": 2.0}}}
    cfg["tables"]["table2_whitebox_k3"]["methods"] = ["baseline", "mydefence"]
    assert problems(cfg) == []  # loads and registers it
    method = get_method("mydefence")
    assert type(method).__name__ == "MyDefence" and method.strength == 2.0 and not method.uses_pdd
    assert example_loss(method) == pytest.approx(hand_loss(2.0), rel=1e-6)
    assert "mydefence" not in BUILTIN and "mydefence" in METHODS


def test_a_module_entry_and_the_pdd_layer(project: Path) -> None:
    plan.register_methods({"methods": {"mine": {"module": "mypkg.defences:MyDefence",
                                                "settings": {"strength": 0.25, "pdd": True}}}})
    method = get_method("mine")
    assert method.strength == 0.25 and method.uses_pdd  # the PDD layer through the class's `pdd` argument
    assert example_loss(method) == pytest.approx(hand_loss(0.25), rel=1e-6)


def test_an_entry_point_is_a_method_by_name(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    point = importlib.metadata.EntryPoint(name="epdefence", value="mypkg.defences:MyDefence", group="pdd.methods")
    seen = []

    def entry_points(group: str):
        seen.append(group)
        return [point] if group == "pdd.methods" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert "epdefence" in registry.available() and "epdefence" not in METHODS  # listed, not loaded yet
    cfg = tiny_config()
    cfg["tables"]["table2_whitebox_k3"]["methods"] = ["epdefence"]  # no `methods` entry needed
    assert problems(cfg) == []
    assert example_loss(get_method("epdefence")) == pytest.approx(hand_loss(0.5), rel=1e-6)  # the class default
    cfg["methods"] = {"epdefence": {"settings": {"strength": 1.5}}}  # an entry with settings only
    assert problems(cfg) == [] and get_method("epdefence").strength == 1.5
    assert set(seen) == {"pdd.methods"}


@pytest.mark.parametrize("entry, message", [
    ({"module": "nopkg.defences:MyDefence"}, "methods.mine.module: cannot import 'nopkg.defences'"),
    ({"module": "mypkg.defences:Missing"}, "methods.mine: module 'mypkg.defences' has no 'Missing'"),
    ({"file": "defences/missing.py", "class": "MyDefence"}, "methods.mine.file: no such file 'defences/missing.py'"),
    ({"file": "defences/mydefence.py", "class": "Missing"}, "methods.mine: file 'defences/mydefence.py' has no "
                                                            "'Missing'"),
    ({"file": "defences/mydefence.py"}, "methods.mine: `file` needs `class`"),
    ({}, "methods.mine: give `module` ('package.module:Class') or `file` and `class`; no installed package"),
    ({"module": "mypkg.defences:Other"}, "methods.mine: mypkg.defences:Other is the class Other, not a subclass of "
                                         "pdd.methods.TrainingMethod"),
    ({"module": "mypkg.defences:NOT_A_CLASS"}, "is a int, not a subclass"),
    ({"module": "mypkg.defences:MyDefence", "settings": {"power": 1}}, "methods.mine.settings: MyDefence(settings, "
                                                                       "**{'power': 1}) failed: TypeError"),
])
def test_a_broken_entry_is_one_line(project: Path, entry: dict, message: str) -> None:
    cfg = tiny_config()
    cfg["methods"] = {"mine": entry}
    found = problems(cfg)
    assert len(found) == 1 and message in found[0] and "\n" not in found[0], found
    assert "mine" not in METHODS


def test_names_of_built_in_methods_and_external_models_are_refused(project: Path) -> None:
    cfg = tiny_config()
    cfg["methods"] = {"gal": {"module": "mypkg.defences:MyDefence"}, "ext": {"module": "mypkg.defences:MyDefence"}}
    cfg["external"] = {"ext": {"factory": "mypkg.defences:MyDefence", "weights": "w.pt"}}
    assert problems(cfg) == ["methods.gal: 'gal' is a built-in method; give yours another name",
                             "methods.ext: also the name of an external model; give one of them another name"]
    assert type(get_method("gal")).__name__ == "GAL"
    with pytest.raises(PluginError):
        registry.register("baseline", {"module": "mypkg.defences:MyDefence"})


def test_the_schema_describes_the_entries_one_line_each() -> None:
    from pdd.plan.checks import schema_problems

    cfg = tiny_config()
    cfg["methods"] = {"Mine": {"module": "a:B"}, "ok": {"file": "x.py", "settings": {"x": [1]}, "modul": "a:B"}}
    assert schema_problems(cfg, REPO / "workflow" / "schemas" / "config.schema.yaml") == [
        "methods: 'Mine' does not match '^[a-z_]+$'",
        "methods.ok.modul: unknown key; did you mean `module`?",
        "methods.ok: 'class' is a dependency of 'file'",
        "methods.ok.settings.x: must be of type ['number', 'string', 'boolean'], got [1]"]


def test_job_commands_carry_the_entry_and_built_in_ones_are_unchanged(project: Path) -> None:
    cfg = tiny_config()
    before = {m: plan.train_args(cfg, "digits", 2, m, 0, "resnet18") for m in ("baseline", "gal")}
    timing_before = plan.timing_args(cfg, 2, "resnet18")
    entry = {"file": "defences/mydefence.py", "class": "MyDefence", "settings": {"strength": 0.5}}
    cfg["methods"] = {"mydefence": entry}
    cfg["tables"]["timing"]["methods"].append("mydefence")
    args = plan.train_args(cfg, "digits", 2, "mydefence", 0, "resnet18")
    assert args.endswith("""--plugins '{"mydefence": {"class": "MyDefence", "file": "defences/mydefence.py", """
                         """"settings": {"strength": 0.5}}}'""")
    assert "--method mydefence" in args and "--pdd-intervals" not in args
    assert {m: plan.train_args(cfg, "digits", 2, m, 0, "resnet18") for m in before} == before
    assert plan.timing_args(cfg, 2, "resnet18").startswith(timing_before.split(" --width")[0] + " --method mydefence")
    assert "--plugins" in plan.timing_args(cfg, 2, "resnet18")


def test_the_cli_trains_a_plugin_and_refuses_a_broken_one(project: Path) -> None:
    from click.testing import CliRunner

    from pdd.cli import main
    from pdd.models import read_checkpoint

    entry = '{"mydefence": {"file": "defences/mydefence.py", "class": "MyDefence", "settings": {"strength": 0.5}}}'
    common = ["train", "--dataset", "digits", "-k", "2", "--width", "2", "--epochs", "1", "--data-root", str(project),
              "--device", "cpu", "--threads", "1", "--log", "log.csv"]
    result = CliRunner().invoke(main, [*common, "--method", "mydefence", "--out", "m.pt", "--plugins", entry])
    assert result.exit_code == 0, result.output + repr(result.exception)
    saved = read_checkpoint("m.pt", torch.device("cpu"))["train_config"]
    assert saved["method"] == "mydefence"
    # The entry is part of what was trained: a resume state made with other settings is not resumed.
    assert saved["plugin"]["settings"] == {"strength": 0.5}
    other = json.loads(json.dumps(saved))
    other["plugin"]["settings"]["strength"] = 0.25
    assert same_training(saved, saved) and not same_training(other, saved)
    METHODS.pop("mydefence")
    result = CliRunner().invoke(main, [*common, "--method", "mydefence", "--out", "n.pt"])
    assert result.exit_code == 2 and "unknown method 'mydefence'" in result.output
    result = CliRunner().invoke(main, [*common, "--method", "baseline", "--out", "n.pt", "--plugins",
                                       '{"x": {"file": "nope.py", "class": "A"}}'])
    assert result.exit_code == 2 and "methods.x.file: no such file 'nope.py'" in result.output
    assert not Path("n.pt").exists()


def test_editing_the_user_file_changes_only_its_jobs_code(project: Path) -> None:
    cfg = tiny_config()
    cfg["methods"] = {"mydefence": {"file": "defences/mydefence.py", "class": "MyDefence"}}
    code = plan.method_code(cfg, ["mydefence"])
    assert len(code) == 16 and plan.method_code(cfg, ["baseline", "gal", "pdd-M4"]) == ""
    path = project / "defences" / "mydefence.py"
    path.write_text(path.read_text().replace('"""My defence:', '"""Reworded: my defence:') + "\n# a comment\n")
    assert plan.method_code(cfg, ["mydefence"]) == code  # docstrings and comments rerun nothing
    path.write_text(path.read_text().replace("(k * (k - 1))", "(k * k)"))
    assert plan.method_code(cfg, ["mydefence"]) != code
    assert plan.method_code(cfg, ["baseline"]) == ""


def test_the_fingerprint_covers_the_pdd_modules_the_user_file_imports(project: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pdd import fingerprint as fp

    files = loader.source_files(loader.load_class("mine", {"file": "defences/mydefence.py", "class": "MyDefence"}))
    assert files == [str((project / "defences" / "mydefence.py").resolve())]
    before = fp.file_fingerprint(tuple(files))
    read = fp.source
    monkeypatch.setattr(fp, "source", lambda path: read(path) + ("\nEDITED = 1" if path.name == "losses.py" else ""))
    fp.fingerprint.cache_clear()
    try:
        assert fp.file_fingerprint(tuple(files)) != before  # the example imports pdd.losses
    finally:
        fp.fingerprint.cache_clear()


@pytest.mark.slow
def test_the_workflow_trains_and_tables_a_plugin_and_reruns_it_on_edit(tmp_path: Path) -> None:
    """The manual's defence in a white-box table through Snakemake (one epoch, one attack); editing its file then
    reruns its training (the code param) and what depends on it."""
    import pandas as pd
    import yaml

    from conftest import snakemake

    (tmp_path / "defences").mkdir()
    (tmp_path / "defences" / "mydefence.py").write_text(readme_example())
    cfg = tiny_config()
    cfg["datasets"]["digits"]["epochs"] = 1
    cfg["attacks"] = {"digits": {"pgd": [0.3]}}
    cfg["methods"] = {"mydefence": {"file": "defences/mydefence.py", "class": "MyDefence",
                                    "settings": {"strength": 1.0}}}
    cfg["tables"] = {"table2_whitebox_k3": {"datasets": ["digits"], "K": [2], "methods": ["mydefence"]}}
    cfg.pop("figures")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(tmp_path, "all_tables", "--configfile", "c.yaml")
    table = pd.read_csv(tmp_path / "results/tables/table2_whitebox_k3.csv")
    values = table.set_index(["attack", "param", "method"])["value"].unstack("method")
    assert list(values.columns) == ["mydefence"] and len(values) == 2  # clean and PGD 0.3
    assert values["mydefence"].between(0, 100).all()

    assert "Nothing to be done" in snakemake(tmp_path, "all_tables", "--configfile", "c.yaml", "-n").stdout
    path = tmp_path / "defences" / "mydefence.py"
    path.write_text(path.read_text().replace("(k * (k - 1))", "(k * k)"))
    dry = snakemake(tmp_path, "all_tables", "--configfile", "c.yaml", "-n").stdout
    trained = set(re.findall(r"results/models/digits/\w+/K2/(\w+)/seed0/ensemble.pt", dry))
    assert trained == {"mydefence"} and "params have changed" in dry and "prepare_data" not in dry, dry[-3000:]
