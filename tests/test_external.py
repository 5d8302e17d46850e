"""Bring your own ensemble: a user's factory + weights go through the API and the CLI and give exactly the
numbers of the same weights loaded as a pipeline checkpoint; unsafe or ill-fitting weights are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from pdd.api import evaluate
from pdd.cli import main
from pdd.data import get_dataset
from pdd.evaluation.attacks import select_images
from pdd.evaluation.diversity import FEATURE_MEASURES
from pdd.evaluation.external import ExternalModelError, MemberEnsemble, as_ensemble, load_external
from pdd.io import torch_save
from pdd.models import Ensemble, checkpoint

import external_models
from external_models import SPEC, member_states

N = 30  # test images per evaluation
TIMING = {"seconds", "images_per_second", "model"}
STRONG = ["--eps", "0.2", "--apgd-iterations", "2", "--apgd-restarts", "1", "--pgd-steps", "2", "--pgd-steps", "3",
          "--pgd-restarts", "2", "--transfer-steps", "2", "--diagnostic-steps", "2", "--apgd-targets", "2",
          "--mora-iterations", "2", "--mora-mixes", "0", "--mora-mixes", "1", "--square-queries", "5"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One trained `SPEC` ensemble saved four ways: a pipeline checkpoint, its state_dict, and one state_dict
    per member for the nn.Sequential and the plain-module factories; plus member weights with a wrong head."""
    root = tmp_path_factory.mktemp("external")
    torch.manual_seed(0)
    model = Ensemble(SPEC)
    x, y = select_images(get_dataset("digits", "train", root), None)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    for _ in range(2):
        for xb, yb in zip(x.split(64), y.split(64)):
            loss = F.cross_entropy(model(xb).flatten(0, 1), yb.repeat(SPEC.num_members))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    config = {"dataset": "digits", "members": SPEC.num_members, "method": "baseline", "arch": SPEC.arch, "seed": 0}
    paths = {name: root / f"{name}.pt" for name in ("checkpoint", "state_dict", "sequential", "plain", "wide")}
    torch_save(checkpoint(model, train_config=config), paths["checkpoint"])
    torch.save(model.state_dict(), paths["state_dict"])
    torch.save(member_states(model.state_dict(), "0", "1"), paths["sequential"])
    torch.save(member_states(model.state_dict(), "body", "head"), paths["plain"])
    wide = member_states(model.state_dict(), "body", "head")
    torch.save([{**m, "head.weight": torch.zeros(11, 8 * SPEC.width)} for m in wide], paths["wide"])
    return paths


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)


def fails(*args: str) -> str:
    """The error output of a CLI call that must fail cleanly (a usage or click error, no traceback)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2 or (result.exit_code == 1 and result.exception.__class__ is SystemExit), \
        result.output + repr(result.exception)
    return result.output


def external(factory: str, weights: Path, name: str = "mine") -> list[str]:
    return ["--factory", f"external_models:{factory}", "--weights", str(weights), "--dataset", "digits",
            "--name", name]


def read(path: Path) -> list[dict]:
    """A job's result records without its cost record (timings differ between routes)."""
    return [r for r in json.loads(path.read_text()) if r["metric"] != "cost"]


def without(records: list[dict], keys: set[str]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in keys} for r in records]


ATTACKS = [("none", []), ("pgd", ["0.1", "0.3"])]


@pytest.fixture(scope="module")
def checkpoint_results(files, tmp_path_factory) -> dict[str, list[dict]]:
    """`pdd attack` on the pipeline checkpoint: the reference numbers."""
    out = tmp_path_factory.mktemp("ref")
    results = {}
    for attack, params in ATTACKS:
        cli("attack", "--model", files["checkpoint"], "--attack", attack, *[a for p in params for a in ("--param", p)],
            "--num-images", N, "--out", out / f"{attack}.json", "--device", "cpu")
        results[attack] = read(out / f"{attack}.json")
    return results


def test_reference_numbers_are_not_trivial(checkpoint_results) -> None:
    """The equality tests below only mean something if the model is accurate and the attack hurts it."""
    clean = checkpoint_results["none"][0]["value"]
    pgd = [r["value"] for r in checkpoint_results["pgd"]]
    assert clean > 60 and pgd[0] < 100 and pgd[1] < pgd[0]


@pytest.mark.parametrize("factory, weights", [("pdd_ensemble", "state_dict"), ("sequential_members", "sequential"),
                                              ("plain_members", "plain")])
def test_cli_attack_on_external_model_equals_the_checkpoint(files, checkpoint_results, tmp_path, factory: str,
                                                            weights: str) -> None:
    for attack, params in ATTACKS:
        out = tmp_path / f"{attack}.json"
        cli("attack", *external(factory, files[weights]), "--attack", attack,
            *[a for p in params for a in ("--param", p)], "--num-images", N, "--out", out, "--device", "cpu")
        ours, ref = read(out), checkpoint_results[attack]
        assert all(r["method"] == "mine" and r["arch"] == "external" and r["K"] == 2 and r["seed"] == 0 for r in ours)
        assert all(r["model"] == str(files[weights]) for r in ours)
        assert without(ours, TIMING | {"method", "arch"}) == without(ref, TIMING | {"method", "arch"})


def test_api_records_are_the_cli_records(files, checkpoint_results) -> None:
    members = external_models.sequential_members()
    for member, state in zip(members, torch.load(files["sequential"], weights_only=True)):
        member.load_state_dict(state)
    records = evaluate(members, "digits", attacks={"none": [], "pgd": [0.1, 0.3]}, num_images=N, name="mine")
    ref = [{**r, "method": "mine", "arch": "external"} for a, _ in ATTACKS for r in checkpoint_results[a]]
    assert without(records, TIMING) == without(ref, TIMING)


def test_api_takes_images_as_tensors_and_a_single_model(files) -> None:
    x, y = select_images(get_dataset("digits", "test", "."), N)
    model = load_external("external_models:pdd_ensemble", files["state_dict"], dataset="digits")
    by_name = evaluate(model, "digits", {"pgd": [0.3]}, num_images=N)
    by_tensors = evaluate(model, (x, y), {"pgd": [0.3]})
    assert by_tensors[0]["dataset"] == "custom"
    # the same images and outcomes; which images they are is indexed in different sets (N given tensors, the split)
    same = TIMING | {"dataset", "images", "split_size"}
    assert without(by_tensors, same) == without(by_name, same)
    assert by_tensors[0]["split_size"] == N and by_name[0]["split_size"] == len(get_dataset("digits", "test", "."))
    # One module (K = 1): its own prediction, no ensemble averaging.
    single = external_models.single_model()
    single.load_state_dict(torch.load(files["plain"], weights_only=True)[0])
    clean = evaluate(single, (x, y), settings={"batch_size": 7})[0]
    expected = 100.0 * float((single.eval()(x).argmax(1) == y).float().mean())
    assert clean["K"] == 1 and clean["value"] == pytest.approx(expected)


def test_api_rejects_bad_attack_requests() -> None:
    model = as_ensemble(external_models.plain_members(), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown attack"):
        evaluate(model, "digits", {"pgdd": [0.1]})
    with pytest.raises(ValueError, match="pgd needs at least one parameter"):
        evaluate(model, "digits", {"pgd": []})
    with pytest.raises(ValueError, match="eps"):
        evaluate(model, "digits", {"none": []}, strong={"apgd_iterations": 2}, num_images=5)


def test_transfer_to_an_external_target_equals_the_checkpoint(files, tmp_path) -> None:
    common = ["--surrogate", files["checkpoint"], "--threat", "blackbox_oblivious", "--attack", "fgsm", "--param",
              "0.2", "--num-images", N, "--device", "cpu"]
    cli("transfer", "--target", files["checkpoint"], *common, "--out", tmp_path / "ref.json")
    cli("transfer", *external("plain_members", files["plain"]), *common, "--out", tmp_path / "ext.json")
    ours, ref = read(tmp_path / "ext.json"), read(tmp_path / "ref.json")
    assert ours[0]["threat"] == "blackbox_oblivious" and ours[0]["surrogate"] == str(files["checkpoint"])
    assert without(ours, TIMING | {"method", "arch"}) == without(ref, TIMING | {"method", "arch"})


def test_strong_evaluation_of_an_external_model_equals_the_checkpoint(files, tmp_path) -> None:
    common = [*STRONG, "--num-images", 20, "--device", "cpu"]
    cli("strong", "--model", files["checkpoint"], *common, "--out", tmp_path / "ref.json")
    cli("strong", *external("plain_members", files["plain"]), *common, "--out", tmp_path / "ext.json")
    ours, ref = read(tmp_path / "ext.json"), read(tmp_path / "ref.json")
    assert {r["attack"] for r in ours} >= {"none", "pgd_2", "pgd_3", "pgd_3x2", "apgd_ce", "apgd_dlr", "worst_case"}
    assert without(ours, TIMING | {"method", "arch"}) == without(ref, TIMING | {"method", "arch"})
    api = evaluate(external_models.pdd_ensemble().eval(), "digits", attacks={}, num_images=20, strong={
        "eps": [0.2], "apgd_iterations": 2, "apgd_restarts": 1, "pgd_steps": [3, 2], "pgd_restarts": 2,
        "transfer_steps": 2, "diagnostic_steps": 2, "apgd_targets": 2, "mora_iterations": 2, "mora_mixes": [0, 1],
        "square_queries": 5})
    assert [r["attack"] for r in api] == [r["attack"] for r in ref]


def test_diversity_of_external_members(files, tmp_path) -> None:
    """With nn.Sequential members every measure equals the checkpoint's; without a feature split, the feature
    measures are empty and the rest is unchanged."""
    common = ["--num-images", N, "--device", "cpu"]
    runs = {"ref": ["--model", files["checkpoint"]], "seq": external("sequential_members", files["sequential"]),
            "plain": external("plain_members", files["plain"])}
    for name, model in runs.items():
        cli("diversity", *model, *common, "--out-json", tmp_path / f"{name}.json",
            "--out-csv", tmp_path / f"{name}.csv")
    entropy = {name: read(tmp_path / f"{name}.json")[0]["value"] for name in runs}
    frames = {name: pd.read_csv(tmp_path / f"{name}.csv") for name in runs}
    assert entropy["seq"] == entropy["plain"] == entropy["ref"] and 0 < entropy["ref"] <= 1
    features = [c for c in FEATURE_MEASURES if c in frames["ref"].columns]
    rest = [c for c in frames["ref"].columns if c not in features + ["method"]]
    pd.testing.assert_frame_equal(frames["seq"].drop(columns="method"), frames["ref"].drop(columns="method"))
    pd.testing.assert_frame_equal(frames["plain"][rest], frames["ref"][rest])
    assert "fisher" in features and frames["plain"][features].isna().all().all()
    assert frames["ref"]["fisher"].notna().all()
    assert (frames["plain"]["method"] == "mine").all()


def test_diversity_needs_two_members(files, tmp_path) -> None:
    output = fails("diversity", "--factory", "external_models:single_model", "--dataset", "digits", "--name", "one",
                   "--out-json", tmp_path / "d.json", "--out-csv", tmp_path / "d.csv", "--device", "cpu")
    assert "K >= 2" in output and not (tmp_path / "d.json").exists()


class RunsCode:
    """Unpickling this calls exec: the payload weights_only=True must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_weights_that_would_run_code_are_refused(files, tmp_path) -> None:
    marker, weights = tmp_path / "ran.txt", tmp_path / "evil.pt"
    state = torch.load(files["state_dict"], weights_only=True)
    torch.save({**state, "payload": RunsCode(marker)}, weights)
    with pytest.raises(ExternalModelError, match="refused to load.*could run code"):
        load_external("external_models:pdd_ensemble", weights, dataset="digits")
    output = fails("attack", *external("pdd_ensemble", weights), "--attack", "none", "--out", tmp_path / "o.json")
    assert "refused to load" in output and not marker.exists() and not (tmp_path / "o.json").exists()
    torch.load(weights, weights_only=False)  # the payload is live: trusting the file would have run it
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("factory, weights, message", [
    ("no_colon", None, "not of the form"),
    ("no_such_module_xyz:f", None, "cannot import 'no_such_module_xyz'"),
    ("external_models:missing", None, "has no 'missing'"),
    ("external_models:SPEC", None, "not a callable"),
    ("external_models:not_a_model", None, "returned int"),
    ("external_models:sequential_members", "state_dict", "list of 2 state_dicts"),
    ("external_models:sequential_members", "plain", r"do not fit member 0 .*: 122 missing key\(s\) \(0\.layers"),
    ("external_models:plain_members", "wide", r"do not fit member 0 .*size mismatch for head\.weight"),
    ("external_models:pdd_ensemble", "sequential", "must hold a state_dict, got a list of 2"),
    ("external_models:seven_classes", None, "predicts 7 classes, the dataset has 10"),
    ("external_models:stacked_logits", None, r"returned \[2, 2, 10\].*list of member modules"),
])
def test_clear_errors(files, factory: str, weights: str | None, message: str) -> None:
    with pytest.raises(ExternalModelError, match=message) as error:
        load_external(factory, files[weights] if weights else None, dataset="digits")
    assert len(str(error.value)) < 500  # a message to read, not a dump of every key


def test_cli_option_errors(files, tmp_path) -> None:
    out = ["--attack", "none", "--out", tmp_path / "o.json", "--device", "cpu"]
    assert "--factory needs --name" in fails("attack", "--factory", "external_models:pdd_ensemble",
                                             "--dataset", "digits", *out)
    assert "give --factory too" in fails("attack", "--model", files["checkpoint"], "--dataset", "digits", *out)
    assert "not both" in fails("attack", "--model", files["checkpoint"], *external("pdd_ensemble",
                                                                                     files["state_dict"]), *out)
    assert "give a pdd checkpoint" in fails("attack", *out)
    assert "unknown dataset" in fails("attack", *external("pdd_ensemble", files["state_dict"])[:-4],
                                      "--dataset", "mnist", "--name", "x", *out)
    assert "list of 2 state_dicts" in fails("attack", *external("sequential_members", files["state_dict"]), *out)
    assert "give --factory too" in fails("attack", "--model", files["checkpoint"], "--members", "2", *out)
    # A table's K the model does not have: refused in one line, not rows of their own under the table's title.
    wrong_k = fails("attack", *external("sequential_members", files["sequential"]), "--members", "3", *out)
    assert "has 2 member(s) but its results are asked for K = 3" in wrong_k
    assert not (tmp_path / "o.json").exists()
    cli("attack", *external("sequential_members", files["sequential"]), "--members", "2", *out)


def test_member_ensemble_interface() -> None:
    """What the attack and diversity code call: [K, B, L] logits, log mean softmax, per-member inputs."""
    members = external_models.sequential_members()
    model = as_ensemble(members, torch.rand(2, 1, 8, 8))
    assert isinstance(model, MemberEnsemble) and model.has_features and not model.training
    x = torch.rand(5, 1, 8, 8)
    logits = model(x)
    assert logits.shape == (2, 5, 10) and model.spec.num_classes == 10 and model.num_members == 2
    assert torch.allclose(model.log_mean_prob(x), logits.softmax(-1).mean(0).log(), atol=1e-6)
    per_member = model(torch.stack([x, x.flip(0)]))
    assert torch.allclose(per_member[1], members[1](x.flip(0)))
    assert model.features(x).shape == (2, 5, 8 * SPEC.width)
    plain = as_ensemble(external_models.plain_members(), x)
    with pytest.raises(ExternalModelError, match="no penultimate features"):
        plain.features(x)
    with torch.no_grad():
        assert math.isclose(float(plain.log_mean_prob(x).exp().sum(1).mean()), 1.0, rel_tol=1e-5)



class _MyNet(nn.Sequential):
    """A member written the natural way: an nn.Sequential subclass whose __init__ builds its own modules."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))


def test_sequential_subclass_members_expose_features() -> None:
    """Slicing such a member would call `_MyNet(modules)` (TypeError); the body is a plain Sequential instead."""
    torch.manual_seed(0)
    members = [_MyNet(), _MyNet()]
    model = as_ensemble(members, torch.rand(2, 1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    assert model.has_features and model.features(x).shape == (2, 4, 12)
    heads = model.heads
    assert torch.allclose(torch.stack([h(f) for h, f in zip(heads, model.features(x))]), model(x), atol=1e-6)
