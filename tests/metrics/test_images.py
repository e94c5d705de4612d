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
