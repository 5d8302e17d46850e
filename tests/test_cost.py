"""CostMeter: ensemble image-passes counted by hand, the per-member input form, and the block's bounds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pdd.evaluation.cost_meter import CostMeter, batch_images
from pdd.models import Ensemble, EnsembleSpec, LogMeanProb


@pytest.fixture
def model() -> Ensemble:
    torch.manual_seed(0)
    return Ensemble(EnsembleSpec("resnet18", 2, 4, 1, width=1)).eval()


def test_two_forwards_and_one_backward(model) -> None:
    x = torch.rand(5, 1, 6, 6)
    with CostMeter(model) as cost:
        model(x)
        model(x).sum().backward()
    assert (cost["forward_images"], cost["backward_images"]) == (10, 5)
    assert cost["seconds"] > 0 and cost["peak_rss_mb"] > 10 and cost["peak_gpu_mb"] is None
    assert set(cost) == {"seconds", "forward_images", "backward_images", "peak_rss_mb", "peak_gpu_mb"}


def test_per_member_copies_count_as_one_image(model) -> None:
    """DEG's input [K, B, ...] holds one copy per member: B images, as for [B, ...]."""
    assert batch_images(torch.zeros(5, 1, 6, 6)) == 5 and batch_images(torch.zeros(2, 5, 1, 6, 6)) == 5
    xs = torch.rand(2, 3, 1, 6, 6, requires_grad=True)
    with CostMeter(model) as cost:
        loss = model(xs).logsumexp(-1).sum()
        (grad,) = torch.autograd.grad(loss, xs, create_graph=True)  # first order: one pass
        (loss + grad.square().sum()).backward()                      # second order: another
    assert (cost["forward_images"], cost["backward_images"]) == (3, 6)


def test_no_grad_forward_has_no_backward(model) -> None:
    with CostMeter(model) as cost, torch.no_grad():
        model(torch.rand(4, 1, 6, 6))
        model.log_mean_prob(torch.rand(7, 1, 6, 6))
    assert (cost["forward_images"], cost["backward_images"]) == (11, 0)


def test_wrappers_count_the_ensemble_once_and_each_ensemble(model) -> None:
    wrapped = LogMeanProb(model)
    with CostMeter(wrapped) as cost:
        wrapped(torch.rand(3, 1, 6, 6)).sum().backward()
    assert (cost["forward_images"], cost["backward_images"]) == (3, 3)
    other = Ensemble(EnsembleSpec("resnet18", 3, 4, 1, width=1)).eval()
    with CostMeter(nn.ModuleList([model, other])) as cost:
        model(torch.rand(2, 1, 6, 6))
        other(torch.rand(4, 1, 6, 6))
    assert cost["forward_images"] == 6


def test_nothing_is_counted_outside_the_block(model) -> None:
    x = torch.rand(5, 1, 6, 6)
    model(x)  # before: not counted
    with CostMeter(model) as cost:
        out = model(x)
    out.sum().backward()  # a graph built inside, backpropagated after: not counted
    model(x)
    assert (cost["forward_images"], cost["backward_images"]) == (5, 0)
    assert not model._forward_hooks


def test_a_plain_module_is_metered_itself() -> None:
    net = nn.Linear(3, 2)
    with CostMeter(net) as cost:
        net(torch.rand(8, 3)).sum().backward()
    assert (cost["forward_images"], cost["backward_images"]) == (8, 8)


def test_without_a_model_every_outermost_ensemble_built_in_the_block_counts() -> None:
    """Training builds its ensemble inside the block: the global meter counts its calls once (the inner
    members' forwards are not Ensemble calls), and nothing after the block."""
    with CostMeter() as cost:
        built = Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2))
        built(torch.rand(3, 1, 8, 8)).sum().backward()
        LogMeanProb(built)(torch.rand(4, 1, 8, 8))
    built(torch.rand(5, 1, 8, 8))
    assert (cost["forward_images"], cost["backward_images"]) == (7, 3)


def test_without_a_model_members_and_external_ensembles_count() -> None:
    """Member transfer attacks one member at a time and external models are MemberEnsembles: both are
    evaluated like ensembles (a `log_mean_prob`), so the global meter counts them, each call once."""
    from pdd.evaluation.external import MemberEnsemble
    from pdd.evaluation.member_transfer import Member

    torch.manual_seed(0)
    model = Ensemble(EnsembleSpec("resnet18", 2, 10, 1, width=2)).eval()
    external = MemberEnsemble([nn.Sequential(nn.Flatten(), nn.Linear(64, 10)) for _ in range(2)], 10)
    with CostMeter() as cost:
        Member(model, 1).log_mean_prob(torch.rand(3, 1, 8, 8))
        external.log_mean_prob(torch.rand(4, 1, 8, 8)).sum().backward()
    assert (cost["forward_images"], cost["backward_images"]) == (7, 4)
