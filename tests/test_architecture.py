"""The package's shape: the workflow plans without torch, the wings import only what their rules allow, and no
module imports itself back through others (docs/architecture.md)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pdd.methods import METHODS, get_method
from pdd.plan.dag import jobs_per_output, snakemake_dag
from pdd.plan.outputs import OUTPUTS, main_file, requested
from pdd.plan.paths import job_of
from pdd.settings.methods import BUILTIN, METHOD_INFO, MethodInfo

from conftest import REPO

PACKAGE = REPO / "pdd"
NEW_RULES = {"gradcam", "examples"}  # rules added after tests/data/jobs_per_output_demo.json was recorded
BLOCK = 'raise ImportError("blocked by tests/test_architecture.py: the workflow must plan without {name}")\n'


def blocked_path(tmp_path: Path, *names: str) -> str:
    """A PYTHONPATH whose first directory holds packages `names` that raise ImportError on import, then the repo."""
    for name in names:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text(BLOCK.format(name=name))
    return os.pathsep.join([str(tmp_path), str(REPO)])


def test_blocked_torch_really_raises(tmp_path: Path) -> None:
    """The stand-in below works: `import torch` fails in such a process (else the next test proves nothing)."""
    env = {**os.environ, "PYTHONPATH": blocked_path(tmp_path, "torch")}
    proc = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked by tests/test_architecture.py" in proc.stderr


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/demo.yaml"])
def test_snakemake_plans_without_torch(tmp_path: Path, configfile: str) -> None:
    """`snakemake -n all` plans the paper's and the demo's DAG in a process where importing torch raises."""
    env = {**os.environ, "PYTHONPATH": blocked_path(tmp_path / "path", "torch")}
    proc = subprocess.run(["snakemake", "-n", "all", "--configfile", str(REPO / configfile), "-s",
                           str(REPO / "Snakefile"), "-d", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "This was a dry-run" in proc.stdout


def test_snakemake_lints_without_torch(tmp_path: Path) -> None:
    """`snakemake --lint` loads the workflow without torch too."""
    env = {**os.environ, "PYTHONPATH": blocked_path(tmp_path / "path", "torch")}
    proc = subprocess.run(["snakemake", "--lint", "--configfile", str(REPO / "config" / "demo.yaml"), "-s",
                           str(REPO / "Snakefile"), "-d", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]


def test_method_info_describes_each_method() -> None:
    """The torch-free facts of every built-in method (pdd.settings.methods) are those of the method itself."""
    assert set(METHODS) >= BUILTIN and set(METHOD_INFO) == BUILTIN
    for name in BUILTIN:
        assert MethodInfo.of(get_method(name)) == METHOD_INFO[name], name


def test_cost_table_jobs_are_those_recorded_before_snakemake_owned_the_dag(tmp_path: Path) -> None:
    """The cost table's jobs per output, read from Snakemake's DAG (pdd.plan.dag), equal the list the package's own
    second DAG (pdd.plan.jobs before this change) gave on the demo: tests/data/jobs_per_output_demo.json, recorded
    by running that code. Jobs of rules added since (NEW_RULES) are left out of the comparison, and so are outputs'
    own `seeds` (the record predates them: the demo as it was then)."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for section in ("tables", "figures"):
        for spec in (demo.get(section) or {}).values():
            (spec or {}).pop("seeds", None)
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo))
    names = [n for n in requested(demo) if "jobs" not in OUTPUTS[n].needs]
    found = jobs_per_output(snakemake_dag(tmp_path / "demo.yaml", tmp_path), {n: main_file(n) for n in names})
    recorded = json.loads((REPO / "tests" / "data" / "jobs_per_output_demo.json").read_text())
    assert {n: [b for b in jobs if job_of(b)[0] not in NEW_RULES] for n, jobs in found.items()} == recorded


# ----------------------------------------------------------------------------- the import graph


def module_of(path: Path) -> str:
    """'pdd.plan.config' of pdd/plan/config.py, 'pdd.plan' of pdd/plan/__init__.py."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` (annotations only: never run)."""
    return {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
            and getattr(block.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(block)}


def imports(name: str, top_level_only: bool = False) -> set[str]:
    """Every module `name` imports (`from pdd.x import y` is pdd.x.y where that is a module), anywhere in its body
    (inside functions too) unless `top_level_only`; `if TYPE_CHECKING:` imports left out."""
    tree = ast.parse(MODULES[name].read_text())
    skip = type_checking_only(tree)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return found


GRAPH = {name: {m for m in imports(name) if m in MODULES} for name in MODULES}


def reached(name: str, graph: dict[str, set[str]] = GRAPH) -> set[str]:
    """Every package module `name` reaches through imports (itself included)."""
    seen, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += sorted(graph.get(module, ()))
    return seen


def test_no_import_circle_in_the_package() -> None:
    """No module reaches itself again through imports (function-level imports count: they run too)."""
    circles = sorted(name for name in MODULES if any(name in reached(m) for m in GRAPH[name]))
    assert circles == []


TORCH_CORE = {"pdd.data", "pdd.models", "pdd.dropout", "pdd.losses", "pdd.gradients", "pdd.augment", "pdd.training",
              "pdd.step_timing", "pdd.devices", "pdd.api", "pdd.cli"}


def wing(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_plan_and_settings_import_only_torch_free_modules() -> None:
    """pdd/settings/ imports only itself and pdd.validation; pdd/plan/ nothing from the evaluation, the estimate or
    the torch core. The one exception: the plan loads a user's own training method (torch code by nature) through
    pdd.methods, inside the functions that need it, so a config without one never imports it."""
    for name in MODULES:
        if wing(name, "pdd.settings"):
            assert GRAPH[name] <= {m for m in MODULES if wing(m, "pdd.settings")} | {"pdd.validation"}, name
        if wing(name, "pdd.plan"):
            bad = {m for m in GRAPH[name] if wing(m, "pdd.evaluation") or wing(m, "pdd.estimate") or m in TORCH_CORE}
            assert bad == set(), (name, bad)
            top = imports(name, top_level_only=True)
            assert not any(wing(m, "pdd.methods") for m in top), (name, "pdd.methods at module level")
    plan = {m for name in MODULES if wing(name, "pdd.plan") and name != "pdd.plan.dag"
            for m in reached_top_level(name)}
    assert not {"torch", "numpy"} & {m.split(".")[0] for name in plan for m in imports(name, top_level_only=True)}


def reached_top_level(name: str) -> set[str]:
    """The package modules importing `name` runs (module-level imports only, transitively)."""
    return reached(name, {m: {i for i in imports(m, top_level_only=True) if i in MODULES} for m in MODULES})


ATTACK_CODE = {"pdd.evaluation.attacks", "pdd.settings.attacks", "pdd.evaluation.strong", "pdd.evaluation.mora",
               "pdd.evaluation.member_transfer"}


def test_training_never_reaches_attack_code() -> None:
    """pdd.training and every training method reach no attack code (an attack edit must not retrain a model)."""
    for name in ["pdd.training", *(m for m in MODULES if wing(m, "pdd.methods"))]:
        assert reached(name) & ATTACK_CODE == set(), name


READERS = {"pdd.evaluation.records", "pdd.evaluation.statistics", "pdd.evaluation.between_seeds",
           "pdd.evaluation.figure_files"}  # torch-free


def test_report_builders_read_result_files_only() -> None:
    """Every registry builder (and what it reaches) loads no model: nothing of the torch core or of the evaluation
    but its torch-free readers of result files; importing one imports no torch."""
    builders = {o.builder.split(":")[0] for o in OUTPUTS.values()}
    for builder in builders:
        found = reached(builder)
        assert found & TORCH_CORE == set(), builder
        assert {m for m in found if wing(m, "pdd.evaluation")} <= READERS, builder
        assert "torch" not in {i.split(".")[0] for m in reached_top_level(builder)
                               for i in imports(m, top_level_only=True)}, builder
