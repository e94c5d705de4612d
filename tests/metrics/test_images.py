import pytest
import torch

from probgen.errors import UserError
from probgen.metrics.images import to_rgb, to_uint8


def test_round_and_clamp_at_the_ends_and_out_of_range():
    x = torch.tensor([0.0, 1.0, 0.5, 0.999, 0.001, -0.1, 1.2, 2.0, -5.0]).view(1, 1, 3, 3)
    got = to_uint8(x).flatten().tolist()
    assert got == [0, 255, 128, 255, 0, 0, 255, 255, 0]  # 127.5 rounds half to even: 128


def test_torchmetrics_normalize_would_truncate_and_wrap():
    # What `normalize=True` does, (x * 255).byte(), next to ours: the reason probgen never uses it.
    x = torch.tensor([0.999, 1.2]).view(1, 1, 1, 2)
    assert (x * 255).byte().flatten().tolist() == [254, 50]
    assert to_uint8(x).flatten().tolist() == [255, 255]


def test_symmetric_range():
    x = torch.tensor([-1.0, 0.0, 1.0, 1.5]).view(1, 1, 2, 2)
    assert to_uint8(x, (-1.0, 1.0)).flatten().tolist() == [0, 128, 255, 255]  # 0 -> 127.5 -> 128


def test_uint8_passes_through_and_nan_is_a_user_error():
    u = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    assert to_uint8(u) is u
    with pytest.raises(UserError, match="non-finite"):
        to_uint8(torch.tensor([[[[0.5, float("nan")]]]]))


def test_to_rgb_repeats_gray_and_keeps_rgb():
    g = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    rgb = to_rgb(g)
    assert rgb.shape == (2, 3, 4, 4) and all(torch.equal(rgb[:, c], g[:, 0]) for c in range(3))
    assert to_rgb(rgb) is rgb
    with pytest.raises(ValueError):
        to_rgb(torch.zeros(2, 2, 4, 4, dtype=torch.uint8))


def _pil_resize(images, size, mode):
    """The reference: PIL on each channel as a float image ('F'), clean-fid's make_resizer('PIL', False,
    'bicubic'); on uint8 RGB images for pil-bicubic (torchvision's Resize on a PIL image)."""
    import numpy as np
    from PIL import Image

    out = []
    for im in images:
        if mode == "clean":
            chans = [Image.fromarray(c.numpy().astype(np.float32), mode="F") for c in im]
            out.append(np.stack([np.asarray(c.resize((size, size), Image.BICUBIC)).clip(0, 255) for c in chans]))
        else:
            rgb = Image.fromarray(im.permute(1, 2, 0).numpy(), mode="RGB").resize((size, size), Image.BICUBIC)
            out.append(np.asarray(rgb).transpose(2, 0, 1).astype(np.float32))
    return torch.from_numpy(np.stack(out))


@pytest.mark.parametrize(("h", "size"), [(32, 299), (64, 224), (300, 224), (17, 29)])
def test_clean_resize_matches_pil_bicubic_on_float_pixels(h, size):
    from probgen.metrics.images import resize_images

    g = torch.Generator().manual_seed(h)
    x = torch.randint(0, 256, (2, 3, h, h), generator=g, dtype=torch.uint8)  # noise: the hardest case
    ref = _pil_resize(x, size, "clean")
    got = resize_images(x, size, "clean")
    assert (got - ref).abs().max() < 0.01  # float32 rounding only (a grey level is 1)
    # the check can fail: torch's plain bicubic (a = -0.75, no antialiasing) is grey levels away
    plain = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bicubic").clamp(0, 255)
    assert (plain - ref).abs().max() > 1.0
    # pil-bicubic: PIL's uint8 path uses fixed-point weights: a rare pixel differs by a grey level or two
    diff = (resize_images(x, size, "pil-bicubic") - _pil_resize(x, size, "pil-bicubic")).abs()
    assert diff.max() <= 2.0 and (diff > 0).double().mean() < 0.01


def test_resize_modes_differ_and_the_input_size_is_identity():
    from probgen.metrics.images import RESIZE_MODES, resize_images

    x = torch.randint(0, 256, (1, 3, 40, 40), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    outs = {m: resize_images(x, 299, m) for m in RESIZE_MODES}
    for m, y in outs.items():
        assert y.shape == (1, 3, 299, 299) and y.dtype == torch.float32, m
        assert torch.equal(resize_images(x, 40, m), x.float())  # nothing to resize
    assert not torch.allclose(outs["legacy-tf"], outs["clean"], atol=1.0)
    assert (outs["pil-bicubic"] - outs["clean"]).abs().max() > 0.5  # rounded (and clipped) between passes


def test_config_resize_choices_are_the_metrics_modes():
    from probgen.config.eval import RESIZE_CHOICES
    from probgen.metrics.images import RESIZE_MODES

    assert tuple(RESIZE_MODES) == RESIZE_CHOICES
