"""The SLURM profile on a real single-node SLURM cluster started on this machine.

The fixture writes a minimal slurm.conf (no accounting database, two fake GPUs declared as
GRES backed by plain files, since there is no GPU here), starts munged, slurmctld and slurmd
as children of the test, and stops them afterwards. The workflow then runs through a profile
derived from profiles/slurm: the same file with test-only overrides (partition name, node
memory, squeue for job status because sacct has no database to ask). Every GPU rule must have
run as a SLURM job that was given a GPU; the local rules must not have been submitted.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, SNAKEFILE, tiny_config

PROFILE = REPO / "profiles" / "slurm" / "config.v8+.yaml"
GPU_RULES = {"train", "diversity", "strong"}  # at least these; _gpu_rules() reads the workflow
BINARIES = ["munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun"]
PARTITION = "pddtest"


def _missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line(name: str) -> str:
    """This machine as slurmd sees it (CPUs, sockets, cores, threads, memory), as a NodeName line."""
    first = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    fields = [f for f in first.split() if not f.startswith(("NodeName=", "UpTime="))]
    return f"NodeName={name} NodeAddr=127.0.0.1 {' '.join(fields)} Gres=gpu:2 State=UNKNOWN"


def _slurm_conf(root: Path, node: str) -> str:
    return "\n".join([
        "ClusterName=pddtest",
        f"SlurmctldHost={node}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root}/munge/munge.socket",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log",
        f"SlurmdLogFile={root}/log/slurmd.log",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MinJobAge=600",  # finished jobs stay visible to squeue/scontrol for the assertions
        "GresTypes=gpu",
        _node_line(node),
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _wait_for(predicate, timeout: float, what: str, logs: list[Path]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:] if p.exists() else '(missing)'}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


class Cluster:
    """A running single-node SLURM cluster: its environment (SLURM_CONF) and files."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env

    def run(self, *cmd: str) -> str:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=True).stdout

    def jobs(self) -> dict[str, dict[str, str]]:
        """Every job slurmctld knows (finished ones too): id -> scontrol's key=value fields."""
        jobs = {}
        for line in self.run("scontrol", "show", "job", "--oneliner").splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobId" in fields:
                jobs[fields["JobId"]] = fields
        return jobs

    @property
    def ctld_log(self) -> str:
        return (self.root / "log" / "slurmctld.log").read_text()


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory) -> Cluster:
    missing = _missing_binaries()
    if missing:
        pytest.skip(f"SLURM/munge not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("the test SLURM cluster runs slurmd as root, which launches jobs as their user")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "spool", "state", "log"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o700)
    node = socket.gethostname().split(".")[0]
    for i in range(2):  # fake GPU device files for the gpu GRES
        (root / f"nvidia{i}").touch()
    (root / "slurm.conf").write_text(_slurm_conf(root, node))
    (root / "gres.conf").write_text(f"NodeName={node} Name=gpu File={root}/nvidia[0-1]\n")
    # The jobstep plugin strips SLURM_* (SLURM_CONF too) from the environment of the `srun` it
    # starts inside a job: a real cluster keeps its config at the standard path, ours is in tmp.
    # A shim first on PATH gives that srun our config back.
    shim = root / "bin" / "srun"
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nSLURM_CONF={root}/slurm.conf exec {shutil.which('srun')} \"$@\"\n")
    shim.chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "PATH": f"{shim.parent}:{os.environ['PATH']}"}
    for key in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[key]
    key = root / "munge" / "munge.key"
    subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True, capture_output=True)
    key.chmod(0o400)

    logs = [root / "log" / name for name in ("munged.log", "slurmctld.log", "slurmd.log")]
    daemons: list[subprocess.Popen] = []

    def start(*cmd: str, log: Path) -> None:
        daemons.append(subprocess.Popen(cmd, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT))

    cluster = Cluster(root, env)
    try:
        start("munged", "--foreground", "--force", f"--socket={root}/munge/munge.socket", f"--key-file={key}",
              f"--pid-file={root}/munge/munged.pid", f"--seed-file={root}/munge/munged.seed",
              f"--log-file={logs[0]}", log=root / "log" / "munged.out")
        _wait_for(lambda: (root / "munge" / "munge.socket").exists(), 30, "munged", logs)
        conf = str(root / "slurm.conf")
        start("slurmctld", "-D", "-i", "-f", conf, log=root / "log" / "slurmctld.out")
        start("slurmd", "-D", "-N", node, "-f", conf, log=root / "log" / "slurmd.out")

        def idle() -> bool:
            proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True)
            return proc.returncode == 0 and proc.stdout.strip() == "idle"

        _wait_for(idle, 60, "the node to be idle in sinfo", logs)
        yield cluster
    finally:
        subprocess.run(["scancel", "--partition", PARTITION], env=env, capture_output=True)
        for proc in reversed(daemons):  # slurmd, slurmctld, then munged
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _test_profile(directory: Path) -> Path:
    """profiles/slurm with what differs on the test cluster; everything else (GPU requests) unchanged."""
    profile = yaml.safe_load(PROFILE.read_text())
    profile["default-resources"]["slurm_partition"] = PARTITION
    del profile["default-resources"]["slurm_account"]
    for rule in profile["set-resources"].values():
        rule["mem_mb"] = 1500                       # the node's memory, not a GPU server's
    profile.update({
        "slurm-no-account": True,                   # no accounting database to validate an account against
        "slurm-status-command": "squeue",           # sacct needs slurmdbd; squeue asks slurmctld
        # The plugin checks job status after this many seconds, then waits 10 s longer after every check
        # that finds no job finished: with 5, a tiny job here (two Snakemake starts and one pdd run,
        # 12-18 s) is seen done at the second check, about 20 s after submission.
        "slurm-init-seconds-before-status-checks": 5,
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
        "retries": 0,
    })
    directory.mkdir()
    (directory / "config.v8+.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


def _local_default_profile(xdg: Path) -> None:
    """A user's ~/.config/snakemake/default made for a workstation: it must not take over the cluster run."""
    directory = xdg / "snakemake" / "default"
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump({
        "executor": "local",
        "default-resources": {"slurm_partition": "no_such_partition"},
        "set-resources": {"train": {"gpu": 0}},
        "resources": {"gpu": 1},
        "keep-going": True,
    }))


def _slurm_config() -> dict:
    """The tiny config cut to one model: Table 2 (clean + FGSM) and timing for one baseline ensemble."""
    cfg = tiny_config()
    cfg["attacks"] = {"digits": {"fgsm": [0.1]}}
    one = {"datasets": ["digits"], "K": [2], "methods": ["baseline"]}
    cfg["tables"] = {"table2_whitebox_k3": dict(one), "timing": dict(one)}
    cfg["figures"] = {}
    return cfg


def _gpu_rules() -> set[str]:
    """Rules of the workflow that declare `resources: gpu=1`."""
    text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    bodies = re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", text, re.M | re.S)
    return {m.group(1) for m in bodies if re.search(r"^\s+gpu=1,?$", m.group(2), re.M)}


def test_profile_requests_a_gpu_for_every_gpu_rule() -> None:
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    assert list(profile)[0] == "default-resources"  # the one place to edit, at the top
    assert set(profile["default-resources"]) >= {"slurm_partition", "slurm_account"}
    gpu_rules = _gpu_rules()
    assert gpu_rules >= GPU_RULES and set(profile["set-resources"]) >= gpu_rules
    # the attack jobs' rules are generated per set of attacks (named whitebox_..., transfer_...): they declare
    # the GPU themselves
    attack_rules = (REPO / "workflow" / "rules" / "evaluate.smk").read_text().split("for group in ATTACK_JOBS:")[1]
    assert re.search(r"^\s+gpu=1,$", attack_rules.split("\nrule ")[0], re.M)
    for rule, res in profile["set-resources"].items():
        assert res["gpu"] == 1 and "runtime" not in res and "mem_mb" not in res, rule  # those live in the rules
        assert not re.search(r"--(gres|gpus)", res.get("slurm_extra", "")), rule  # the plugin forbids them there
    sources = [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]
    blocks = re.findall(r"^localrules:((?:\s*\w+,)+)", "\n".join(p.read_text() for p in sources), re.M)
    local = {name.strip() for block in blocks for name in block.split(",") if name.strip()}
    assert {"prepare_data", "table", "figure"} <= local and not local & gpu_rules


@pytest.mark.slow
def test_workflow_runs_on_slurm(slurm_cluster: Cluster, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "tiny.yaml").write_text(yaml.safe_dump(_slurm_config()))
    profile = _test_profile(tmp_path / "profile")
    _local_default_profile(tmp_path / "xdg")
    env = {**slurm_cluster.env, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "SNAKEMAKE_PROFILE": "default"}
    cmd = ["snakemake", "-s", str(SNAKEFILE), "all_tables", "--workflow-profile", str(profile),
           "--configfile", "tiny.yaml"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    job_logs = "".join(f"--- {f}\n{f.read_text()[-2000:]}\n" for f in work.glob(".snakemake/slurm_logs/**/*.log"))
    assert proc.returncode == 0, out[-5000:] + "\n" + job_logs[-5000:] + slurm_cluster.ctld_log[-2000:]
    assert re.search(r"Using profiles? default and workflow specific profile", out)  # the local one was read

    # Every GPU-class job ran as a SLURM job on our partition, was given a GPU, and completed.
    jobs = slurm_cluster.jobs()
    by_rule: dict[str, list[str]] = {}
    for job_id, job in jobs.items():
        by_rule.setdefault(re.match(r"rule_([a-z_]+?)(?:_wildcards_|$)", job["Comment"]).group(1), []).append(job_id)
        assert job["JobState"] == "COMPLETED", job
        assert job["Partition"] == PARTITION
        assert "gpu:1" in job["TresPerJob"], job                # sbatch --gpus=1 from the profile
        # slurmctld started it: its main scheduler logs "sched: Allocate JobId=N", the backfill plugin
        # "sched/backfill: _start_job: Started JobId=N" (which one runs a job depends on timing: CI's run of
        # 2026-12-03 had job 3 started by backfill).
        assert re.search(rf"(sched: Allocate|sched/backfill: \w+: Started) JobId={job_id} ", slurm_cluster.ctld_log)
        logs = list((work / ".snakemake" / "slurm_logs").glob(f"rule_*/**/{job_id}.log"))
        assert len(logs) == 1 and "Finished job" in logs[0].read_text(), job_id
    assert sorted((rule, len(ids)) for rule, ids in by_rule.items()) == [("time_steps", 1), ("train", 1),
                                                                          ("whitebox_fgsm_none", 1)]
    assert {"prepare_data", "table"}.isdisjoint(by_rule)        # localrules stay on the submit host
    if (os.cpu_count() or 1) >= 2:  # two CPUs, two GPUs: two GPU jobs ran side by side at some point, so the
        spans = [(job["StartTime"], job["EndTime"]) for job in jobs.values()]
        overlaps = [a for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1]]
        assert overlaps, spans  # local profile's `resources: gpu=1` did not cap the cluster run
    train_log = next((work / ".snakemake" / "slurm_logs").glob(f"rule_train/**/{by_rule['train'][0]}.log"))
    assert "pdd train" in train_log.read_text()

    tables = work / "results" / "tables"
    t2 = pd.read_csv(tables / "table2_whitebox_k3.csv")
    assert set(t2["attack"]) == {"none", "fgsm"} and set(t2["method"]) == {"baseline"}
    assert t2["value"].between(0, 100).all()
    timing = pd.read_csv(tables / "timing.csv").set_index("method")
    assert timing.loc["baseline", "ratio"] == pytest.approx(1.0) and timing.loc["baseline", "value"] > 0
    assert (tables / "table2_whitebox_k3.md").exists() and (tables / "timing.md").exists()


def test_profile_header_names_the_pinned_plugin_and_snakemake_versions() -> None:
    """The profile's header said plugin '>= 1.0' while the README said 2.x: the header must state the major
    versions pyproject.toml pins."""
    header = (REPO / "profiles" / "slurm" / "config.v8+.yaml").read_text().splitlines()[0]
    pins = (REPO / "pyproject.toml").read_text()
    plugin = re.search(r'"snakemake-executor-plugin-slurm>=(\d+),<(\d+)"', pins)
    snakemake = re.search(r'"snakemake>=(\d+),<(\d+)"', pins)
    assert plugin and snakemake and int(plugin.group(2)) == int(plugin.group(1)) + 1
    assert f"snakemake-executor-plugin-slurm {plugin.group(1)}.x" in header
    assert f"Snakemake >= {snakemake.group(1)}" in header
