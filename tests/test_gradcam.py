"""Figure 1: Grad-CAM maps and centre distances against hand-worked values; the drawing writes its files."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from pdd.cli import main
from pdd.data import get_dataset
from pdd.evaluation.attacks import predict, select_images
from pdd.evaluation.figure_files import read_figure_data
from pdd.evaluation.gradcam import centre_distance, default_layer, distances_over_images, gradcam, map_centres
from pdd.io import torch_save
from pdd.models import Ensemble, EnsembleSpec, checkpoint, load_ensemble
from pdd.plan.outputs import OUTPUTS
from pdd.reports.gradcam_figure import draw

from conftest import REPO

PAPER = REPO / "config" / "paper_results.csv"


class SpatialMember(nn.Module):
    """`body` (2x2 average pooling) gives maps A [B, 2, 2, 2]; feature c = sum_ij S_c(i, j) A_c(i, j), so
    dlogit/dA_c = W[t, c] * S_c and the Grad-CAM channel weight is W[t, c] * mean(S_c)."""

    def __init__(self, spatial: torch.Tensor):
        super().__init__()
        self.body = nn.AvgPool2d(2)
        self.register_buffer("spatial", spatial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.body(x) * self.spatial).sum(dim=(2, 3))


class HandEnsemble(nn.Module):
    """Three SpatialMembers with fixed heads; forward returns member logits [K, B, L] like pdd's Ensemble."""

    def __init__(self):
        super().__init__()
        ones = torch.ones(2, 2)
        self.members = nn.ModuleList([
            SpatialMember(torch.stack([ones, torch.tensor([[0.0, 0.0], [0.0, 2.0]])])),  # means 1, 0.5
            SpatialMember(torch.stack([ones, ones])),
            SpatialMember(torch.stack([ones, ones])),
        ])
        self.heads = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
        with torch.no_grad():
            for head, row in zip(self.heads, ([1.0, -1.0], [0.0, 1.0], [-1.0, 0.0])):
                head.weight.copy_(torch.tensor([row, [-v for v in row]]))  # class 1 = -class 0
                head.bias.fill_(0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(m(x)) for m, h in zip(self.members, self.heads)])


def hand_input() -> torch.Tensor:
    """Two identical images whose 2x2-pooled maps are A_0 = [[1, 2], [3, 4]] and A_1 = [[4, 0], [0, 4]]."""
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[4.0, 0.0], [0.0, 4.0]]])
    return a.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2).expand(2, 2, 4, 4).clone()


def test_gradcam_by_hand() -> None:
    model = HandEnsemble().eval()
    maps = gradcam(model, hand_input(), torch.tensor([0, 1]), layer="body")
    assert maps.shape == (3, 2, 4, 4)
    # Bilinear 2 -> 4 (align_corners=False) maps a row [a, b] to [a, .75a + .25b, .25a + .75b, b].
    # Image 0, class 0. Member 0: weights (1 * 1, -1 * 0.5): relu(A_0 - 0.5 A_1) = [[0, 2], [3, 2]], max 3.
    m0 = torch.tensor([[0, .5, 1.5, 2], [.75, 1.0625, 1.6875, 2], [2.25, 2.1875, 2.0625, 2], [3, 2.75, 2.25, 2]])
    # Member 1: weights (0, 1): relu(A_1) = [[4, 0], [0, 4]], max 4.
    m1 = torch.tensor([[4, 3, 1, 0], [3, 2.5, 1.5, 1], [1, 1.5, 2.5, 3], [0, 1, 3, 4.0]])
    torch.testing.assert_close(maps[0, 0], m0 / 3)
    torch.testing.assert_close(maps[1, 0], m1 / 4)
    # Member 2: weights (-1, 0): relu(-A_0) = 0 -> stays all zero.
    assert torch.equal(maps[2, 0], torch.zeros(4, 4))
    # Image 1, class 1 (negated heads). Member 0: relu(-A_0 + 0.5 A_1) = [[1, 0], [0, 0]].
    corner = torch.tensor([[1, .75, .25, 0], [.75, .5625, .1875, 0], [.25, .1875, .0625, 0], [0, 0, 0, 0.0]])
    torch.testing.assert_close(maps[0, 1], corner)
    assert torch.equal(maps[1, 1], torch.zeros(4, 4))  # relu(-A_1) = 0
    # Member 2: relu(A_0) = [[1, 2], [3, 4]], max 4.
    m2 = torch.tensor([[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4.0]])
    torch.testing.assert_close(maps[2, 1], m2 / 4)
    assert all(p.grad is None for p in model.parameters())


def test_gradcam_restores_training_mode() -> None:
    model = HandEnsemble().train()
    gradcam(model, hand_input(), torch.tensor([0, 0]), layer="body")
    assert model.training


def tiny(arch: str, pdd: dict | None = None, seed: int = 0) -> Ensemble:
    torch.manual_seed(seed)
    return Ensemble(EnsembleSpec(arch, 3, 10, 1, width=2, pdd=pdd or {})).eval()


@pytest.mark.parametrize("arch, layer", [("resnet18", None), ("resnet18", "layers.5"), ("resnet18", "layers.3"),
                                         ("vgg16", None), ("vgg16", "layers.22")])
def test_gradcam_on_real_ensemble(arch: str, layer: str | None) -> None:
    model = tiny(arch, pdd={"num_intervals": 5, "alpha": 0.9, "beta": 0.1} if arch == "resnet18" else None)
    x = torch.rand(4, 1, 8, 8)
    maps = gradcam(model, x, torch.tensor([0, 3, 5, 9]), layer)
    assert maps.shape == (3, 4, 8, 8)
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.amax(dim=(2, 3))
    assert torch.all((peaks == 1) | (peaks == 0))
    assert all(p.grad is None for p in model.parameters())
    if layer is None:  # last stage is 1x1 on 8x8 inputs: every map is flat, the reason for default_layer
        torch.testing.assert_close(maps.amin(dim=(2, 3)), maps.amax(dim=(2, 3)))


def test_gradcam_batch_matches_single_images() -> None:
    model = tiny("resnet18")
    x, target = torch.rand(3, 1, 8, 8), torch.tensor([1, 4, 7])
    batch = gradcam(model, x, target, "layers.5")
    for b in range(3):
        torch.testing.assert_close(batch[:, b], gradcam(model, x[b:b + 1], target[b:b + 1], "layers.5")[:, 0])


@pytest.mark.parametrize("arch, size, expected", [
    ("resnet18", 8, "layers.5"),    # 8, 8, 4, 2, 1: the last block of stage 3 is 2x2
    ("resnet18", 64, "layers.7"),   # Tiny-ImageNet: the last block, 8x8
    ("resnet18", 28, "layers.7"),   # Fashion-MNIST: 28, 14, 7, 4
    ("resnet18", 3, "layers.3"),    # stride 2: floor((n + 2 - 3) / 2) + 1, so 3, 2, 1, 1
    ("resnet34", 8, "layers.12"),   # 3 + 4 + 6 blocks, stage 3 ends at index 12
    ("vgg16", 8, "layers.22"),      # pools 8 -> 4 -> 2 -> 1: the third block's last ReLU
    ("vgg16", 32, "layers.42"),     # 32 / 16 = 2: the last ReLU
])
def test_default_layer(arch: str, size: int, expected: str) -> None:
    assert default_layer(arch, size) == expected


def test_default_layer_needs_two_pixels() -> None:
    with pytest.raises(ValueError, match="2x2"):
        default_layer("resnet18", 1)


def hot(h: int, w: int, *pixels: tuple[int, int], value: float = 1.0) -> torch.Tensor:
    m = torch.zeros(h, w)
    for r, c in pixels:
        m[r, c] = value
    return m


def test_centre_distance_by_hand() -> None:
    assert centre_distance(torch.stack([hot(5, 5, (0, 0)), hot(5, 5, (3, 4))])) == pytest.approx(5.0)
    # three members at (0, 0), (3, 4), (0, 4): pair distances 5, 4, 3 -> mean 4
    three = torch.stack([hot(5, 5, (0, 0)), hot(5, 5, (3, 4)), hot(5, 5, (0, 4))])
    assert centre_distance(three) == pytest.approx(4.0)
    # a hot region's centre is its mean pixel: (0, 0) and (0, 2) -> (0, 1); to (4, 1) is 4
    assert centre_distance(torch.stack([hot(5, 5, (0, 0), (0, 2)), hot(5, 5, (4, 1))])) == pytest.approx(4.0)
    same = hot(5, 5, (1, 2), (3, 3))
    assert centre_distance(torch.stack([same, same, same])) == 0.0


def test_centre_distance_threshold() -> None:
    a = hot(4, 4, (0, 0)) * 0.95 + hot(4, 4, (2, 0)) * 0.85  # 0.95 at (0, 0), 0.85 at (2, 0)
    b = hot(4, 4, (0, 3))
    assert centre_distance(torch.stack([a, b])) == pytest.approx(3.0)  # only (0, 0) exceeds 0.9
    assert centre_distance(torch.stack([a, b]), threshold=0.8) == pytest.approx(math.sqrt(10))  # centre (1, 0)
    exactly = hot(4, 4, (0, 0)) + hot(4, 4, (2, 0)) * 0.9  # 0.9 itself does not exceed 0.9
    assert centre_distance(torch.stack([exactly, b])) == pytest.approx(3.0)


def test_centre_without_hot_pixels_uses_the_peak() -> None:
    cold = hot(5, 5, (2, 3), value=0.5)  # nothing above 0.9: the argmax pixel (2, 3)
    flat = torch.zeros(5, 5)  # all-zero map: every pixel is the peak -> the image centre (2, 2)
    torch.testing.assert_close(map_centres(torch.stack([cold, flat])), torch.tensor([[2.0, 3.0], [2.0, 2.0]]))
    assert centre_distance(torch.stack([cold, flat])) == pytest.approx(1.0)
    assert centre_distance(torch.stack([flat, hot(5, 5, (2, 0))])) == pytest.approx(2.0)


def test_centre_distance_needs_two_members() -> None:
    with pytest.raises(ValueError, match="K >= 2"):
        centre_distance(torch.zeros(1, 4, 4))


def test_distances_over_images_keeps_commonly_correct() -> None:
    a, b = tiny("resnet18", seed=0), tiny("resnet18", seed=1)
    x = torch.rand(12, 1, 8, 8)
    with torch.no_grad():
        y, pred_b = a.log_mean_prob(x).argmax(1), b.log_mean_prob(x).argmax(1)
    y[0] = (y[0] + 1) % 10  # image 0 is wrong for a, so excluded
    expected = [i for i in range(12) if i != 0 and pred_b[i] == y[i]]
    table = distances_over_images({"baseline": a, "pdd": b}, x, y, layer="layers.5", batch_size=5)
    assert list(table.columns) == ["method", "image", "distance"]
    assert table[table["method"] == "baseline"]["image"].tolist() == expected
    assert table[table["method"] == "pdd"]["image"].tolist() == expected
    if expected:
        i = expected[-1]
        direct = centre_distance(gradcam(b, x[i:i + 1], y[i:i + 1], "layers.5")[:, 0])
        got = table[(table["method"] == "pdd") & (table["image"] == i)]["distance"].item()
        assert got == pytest.approx(direct)
    # the same ensemble twice: every image it predicts is kept, and both rows agree
    same = distances_over_images({"x": a, "y": a}, x, y, layer="layers.5")
    assert sorted(set(same["image"])) == list(range(1, 12))
    assert same[same["method"] == "x"]["distance"].tolist() == same[same["method"] == "y"]["distance"].tolist()


@pytest.mark.parametrize("channels", [1, 3])
def test_draw_writes_png_and_pdf(tmp_path, channels: int) -> None:
    torch.manual_seed(0)
    maps = {m: torch.rand(3, 8, 8) for m in ("baseline", "adp", "pdd")}
    centres = {m: map_centres(v).numpy() for m, v in maps.items()}
    out = tmp_path / "figs" / "figure1_gradcam.png"
    draw(torch.rand(channels, 8, 8).numpy(), {m: v.numpy() for m, v in maps.items()}, centres,
         {"baseline": 1.5, "adp": 2.0, "pdd": 3.25}, out, "digits, image 0")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000
    pdf = out.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1_000
    assert sorted(p.name for p in out.parent.iterdir()) == ["figure1_gradcam.pdf", "figure1_gradcam.png"]


def saved(tmp_path, method: str, seed: int) -> str:
    """A tiny untrained digits ensemble of `method` saved as a pdd checkpoint (what a training job writes)."""
    path = tmp_path / f"{method}.pt"
    model = tiny("resnet18", seed=seed)
    torch_save(checkpoint(model, train_config={"dataset": "digits", "members": 3, "method": method,
                                               "arch": "resnet18", "seed": 0}), path)
    return str(path)


def test_figure_jobs_write_what_the_figures_draw(tmp_path) -> None:
    """`pdd gradcam` and `pdd examples` (Figures 1 and 5's evaluation jobs) write records whose numbers equal the
    same computations done here on the loaded ensembles; the report builders draw from those files alone."""
    paths = {"baseline": saved(tmp_path, "baseline", 0), "pdd": saved(tmp_path, "pdd", 1)}
    models = [a for m, p in paths.items() for a in ("--model", f"{m}={p}")]
    record = tmp_path / "gradcam.json"
    result = CliRunner().invoke(main, ["gradcam", *models, "--image", "3", "--layer", "layers.5", "--over-images",
                                       "--num-images", "12", "--data-root", str(tmp_path), "--out", str(record)])
    assert result.exit_code == 0, result.output
    found, arrays = read_figure_data(record)
    x, y = get_dataset("digits", "test", tmp_path)[3]
    for method, path in paths.items():
        maps = gradcam(load_ensemble(path), x[None], torch.tensor([y]), "layers.5")[:, 0]
        assert found["distances"][method] == pytest.approx(centre_distance(maps))
        assert torch.allclose(torch.from_numpy(arrays[f"maps/{method}"]), maps, atol=1e-6)
    assert found["label"] == int(y) and found["forward_images"] > 0
    # Over images: the same rows as distances_over_images here (one ensemble twice, so that some images are
    # commonly correct: untrained ensembles share none).
    twice = tmp_path / "twice.json"
    result = CliRunner().invoke(main, ["gradcam", "--model", f"a={paths['pdd']}", "--model", f"b={paths['pdd']}",
                                       "--layer", "layers.5", "--over-images", "--num-images", "60", "--data-root",
                                       str(tmp_path), "--out", str(twice)])
    assert result.exit_code == 0, result.output
    same = load_ensemble(paths["pdd"])
    xs, ys = select_images(get_dataset("digits", "test", tmp_path), 60, seed=0)
    direct = distances_over_images({"a": same, "b": same}, xs, ys, "layers.5")
    rows = pd.DataFrame(read_figure_data(twice)[0]["per_image"])
    assert len(direct) > 0 and rows["image"].tolist() == direct["image"].tolist()
    assert rows["distance"].to_numpy() == pytest.approx(direct["distance"].to_numpy())
    spec = {"datasets": ["digits"], "K": [3], "methods": list(paths), "image": 3}
    inputs = [str(record), str(record.with_suffix(".npz"))]
    OUTPUTS["figure1_gradcam"].run(inputs, spec, str(tmp_path / "fig1"), "")
    OUTPUTS["table_figure1_distance"].run(inputs, spec, str(tmp_path / "table"), str(PAPER))
    assert (tmp_path / "fig1.png").stat().st_size > 5_000
    table = pd.read_csv(tmp_path / "table.csv").set_index("method")
    assert table.loc["pdd", "distance"] == pytest.approx(found["distances"]["pdd"])

    record = tmp_path / "examples.json"
    result = CliRunner().invoke(main, ["examples", *models, "--image", "3", "--eps", "pgd=0.1", "--eps",
                                       "pgd_l2=1.0", "--data-root", str(tmp_path), "--out", str(record)])
    assert result.exit_code == 0, result.output
    found, arrays = read_figure_data(record)
    for method, path in paths.items():
        cells = found["cells"][method]
        assert [c["attack"] for c in cells] == ["none", "pgd", "pgd_l2"]
        for i, cell in enumerate(cells):  # each prediction is the ensemble's on the stored image
            image = torch.from_numpy(arrays[f"{method}/{i}"])[None]
            assert cell["predicted"] == int(predict(load_ensemble(path), image, torch.device("cpu"))[0])
        assert (torch.from_numpy(arrays[f"{method}/1"]) - x).abs().max() <= 0.1 + 1e-6  # inside the L-inf ball
    OUTPUTS["figure5_examples"].run([str(record)], spec, str(tmp_path / "fig5"), "")
    assert (tmp_path / "fig5.png").stat().st_size > 5_000


def test_figure_jobs_refuse_bad_input_in_one_line(tmp_path) -> None:
    """An image past the test set, a --model without its method, a budget of another attack: usage errors."""
    path = saved(tmp_path, "baseline", 0)
    out = str(tmp_path / "r.json")
    for args, message in ((["gradcam", "--model", f"b={path}", "--image", "360"], "test set has 360 images"),
                          (["gradcam", "--model", path], "expected METHOD=CHECKPOINT"),
                          (["examples", "--model", f"b={path}", "--eps", "fgsm=0.1"], "expected pgd=EPS")):
        result = CliRunner().invoke(main, [*args, "--data-root", str(tmp_path), "--out", out])
        assert result.exit_code == 2 and message in result.output, result.output
