import pytest
import torch

from probgen.inference.loglik.quadrature import grid_log_px
from probgen.inference.testing.bimodal import Bimodal
from probgen.inference.testing.ppca import PPCA


@pytest.mark.parametrize("s", [0.5, 0.05])  # a wide and a sharp posterior (the fine grid zooms in)
def test_grid_quadrature_is_exact_on_ppca(s):
    model = PPCA.random(12, 2, s=s, seed=0, dtype=torch.float32)
    x = model.simulate(5)
    q = grid_log_px(model.target(x), coarse=121, fine=201)
    assert torch.allclose(q["log_px"], model.log_evidence(x).double(), atol=2e-3)
    assert (q["error"] < 1e-3).all()
    assert ((q["hi"] - q["lo"]) < 12).all()


def test_grid_quadrature_covers_both_modes_of_a_bimodal_posterior():
    model = Bimodal.random(seed=0)
    x = model.simulate(torch.tensor([[1.5, 0.3], [-2.0, -1.0], [0.8, 1.2], [2.5, 0.0]], dtype=torch.float64))
    got = grid_log_px(model.target(x), coarse=121, fine=201)["log_px"]
    want = model.quadrature(x)["log_px"]
    assert torch.allclose(got, want, atol=1e-3)


def test_only_latent_dimension_two():
    model = PPCA.random(6, 3, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="latent dimension 2"):
        grid_log_px(model.target(model.simulate(2)))


def test_a_posterior_beyond_the_box_has_no_error_bound():
    model = PPCA.random(12, 2, s=0.2, seed=0, dtype=torch.float64)
    z = torch.tensor([[0.5, 0.0], [7.0, 0.0], [0.0, -6.5], [1.0, 1.0]], dtype=torch.float64)  # 2 beyond lim 6
    x = z @ model.W.T + model.b
    q = grid_log_px(model.target(x), coarse=121, fine=201)
    assert q["at_edge"].tolist() == [False, True, True, False]
    assert torch.isinf(q["error"][1:3]).all() and (q["error"][[0, 3]] < 1e-3).all()
    wide = grid_log_px(model.target(x), lim=12.0, coarse=241, fine=201)
    assert not wide["at_edge"].any()
    assert torch.allclose(wide["log_px"], model.log_evidence(x), atol=2e-3)
