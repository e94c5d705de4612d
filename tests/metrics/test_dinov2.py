"""DINOv2 loads the OFFICIAL checkpoint's key names into timm's ViT, and runs without any download.

ViT-S/14 stands in for ViT-L/14 (the same code path, one tenth of the cost on a CPU): a timm model's
random weights are saved under the official names (timm's names plus ``mask_token``, at 518 px) and
loaded through probgen's path; its 224-px features must equal a reference built independently here.
The official code itself (facebookresearch/dinov2 at its HEAD, ViT-S/14 with random weights) gave
features identical to probgen's to 0.0 on 224-px inputs when this was written (docs/evaluation.md).
"""

import math

import pytest
import torch

pytest.importorskip("timm")

from probgen.errors import UserError  # noqa: E402
from probgen.metrics import dinov2  # noqa: E402
from probgen.metrics.dinov2 import DINOv2Features, find_dinov2_weights, load_dinov2, timm_dinov2  # noqa: E402
from probgen.metrics.harness import metric_labels  # noqa: E402


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A ViT-S/14 DINOv2 checkpoint with random weights under the official key names (518 px grid)."""
    torch.manual_seed(0)
    net = timm_dinov2("vits14", size=518)
    with torch.no_grad():
        for name, p in net.named_parameters():  # layer scales of 1e-5 would hide the blocks
            if name.endswith("gamma"):
                p.uniform_(0.1, 0.6)
            elif name in ("pos_embed", "cls_token"):
                p.normal_(0, 0.5)
    state = dict(net.state_dict())
    state["mask_token"] = torch.zeros(1, 384)  # in the official file, unused for features
    path = tmp_path_factory.mktemp("dinov2") / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    return path, state


def test_official_keys_load_and_features_match_an_independent_reference(official):
    path, state = official
    ours = DINOv2Features(path, resize="clean", arch="vits14")
    # the reference: the official interpolate_pos_encoding written out (bicubic, scale (16 + 0.1) / 37)
    ref = timm_dinov2("vits14", size=224).eval()
    pos = state["pos_embed"]
    grid = pos[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic")
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, 256, 384)
    weights = {k: v for k, v in state.items() if k != "mask_token"}
    ref.load_state_dict({**weights, "pos_embed": torch.cat([pos[:, :1], patch_pos], 1)}, strict=True)
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(dinov2.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(dinov2.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        got, logits = ours(x)
        want = ref((x.float() / 255 - mean) / std)
    assert logits is None and got.shape == (2, 384)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max())
    # the position grid mattered: a plain size-based resize gives other features
    ref.pos_embed.data[:, 1:] = (
        torch.nn.functional.interpolate(
            pos[:, 1:].reshape(1, 37, 37, 384).permute(0, 3, 1, 2), size=(16, 16), mode="bicubic", antialias=True
        )
        .permute(0, 2, 3, 1)
        .reshape(1, 256, 384)
    )
    with torch.inference_mode():
        assert not torch.allclose(got, ref((x.float() / 255 - mean) / std), rtol=1e-3, atol=1e-3)


def test_chunked_block_names_and_the_preprocessing_record(official):
    path, state = official
    chunked = {(k.replace("blocks.", "blocks.0.", 1) if k.startswith("blocks.") else k): v for k, v in state.items()}
    assert dinov2.official_to_timm(chunked).keys() == dinov2.official_to_timm(dict(state)).keys()
    net = load_dinov2(path, arch="vits14")
    assert net.resize.startswith("pil-bicubic 224") and "ImageNet mean" in net.info["preprocessing"]
    assert net.name == "dinov2-vits14" and metric_labels(net, "x")["fid"] == "FD_dinov2-vits14"  # not FD_DINOv2


def test_fd_dinov2_is_the_name_for_vit_l():
    class Fake:
        name = "dinov2-vitl14"

    labels = metric_labels(Fake(), "dsprites")
    assert labels["fid"] == "FD_DINOv2" and labels["kid"] == "KD_DINOv2" and "is" not in labels


def test_missing_weights_are_one_line_naming_the_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(dinov2.ENV_DINOV2, raising=False)
    with pytest.raises(UserError) as exc:
        find_dinov2_weights()
    msg = str(exc.value)
    hub = tmp_path / "home" / "hub" / "checkpoints" / "dinov2_vitl14_pretrain.pth"
    assert str(hub) in msg and "--dinov2-weights" in msg and dinov2.ENV_DINOV2 in msg and "\n" not in msg
    with pytest.raises(UserError, match="--dinov2-weights: no such file"):
        find_dinov2_weights(tmp_path / "nope.pth")
    hub.parent.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(2)}, hub)
    assert find_dinov2_weights() == hub
    with pytest.raises(UserError, match="not an official DINOv2 state dict"):
        load_dinov2()


def test_position_grid_resize_is_the_official_formula():
    pos = torch.randn(1, 1 + 37 * 37, 8)
    out = dinov2.official_pos_embed(pos, 224)
    assert out.shape == (1, 1 + 16 * 16, 8) and torch.equal(out[:, 0], pos[:, 0])
    assert dinov2.official_pos_embed(pos, 518) is pos
    assert math.isclose((16 + 0.1) / 37 * 37, 16.1)
