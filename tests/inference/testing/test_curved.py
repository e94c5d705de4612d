"""CurvedDecoder: its quadrature log p(x) against the Pyro model's own density, at latent 2 (grid
quadrature of the full model) and at latent 10 and 50 (importance sampling of the full model)."""

import math

import pytest
import torch

from probgen.inference import from_pyro_model, grid_log_px, laplace_fit
from probgen.inference.testing import CurvedDecoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("nonlinear_dim", [1, 2])
def test_latent_2_evidence_matches_grid_quadrature_of_the_pyro_model(nonlinear_dim):
    m = CurvedDecoder.random(2, nonlinear_dim=nonlinear_dim, seed=5)
    x = m.simulate(6, seed=6)
    q = grid_log_px(from_pyro_model(m.model, x), lim=7.0, coarse=161, fine=241)
    assert (q["error"] < 1e-5).all()
    assert torch.allclose(m.log_evidence(x), q["log_px"], atol=1e-5), m.log_evidence(x) - q["log_px"]
    assert (m.quadrature_error(x) < 1e-8).all()


@pytest.mark.parametrize("latent_dim", [10, 50])
@pytest.mark.parametrize("nonlinear_dim", [1, 2])
def test_evidence_matches_importance_sampling_of_the_pyro_model(latent_dim, nonlinear_dim):
    """u from the prior, v from a Gaussian near p(v | u, x): unbiased for p(x) under the model's own
    log p(x, z) whatever that Gaussian is, so the check does not rest on the marginalisation formula."""
    m = CurvedDecoder.random(latent_dim, nonlinear_dim=nonlinear_dim, seed=latent_dim)
    x = m.simulate(4, seed=2)
    k, mm = 20_000, nonlinear_dim
    g = torch.Generator().manual_seed(1)
    u = torch.randn(k, 4, mm, generator=g, dtype=x.dtype)
    cov = torch.linalg.inv(torch.eye(latent_dim - mm, dtype=x.dtype) + m.W.T @ m.W / m.s**2)
    mean = ((x - m.b) - m.features(u) @ m.B.T) @ m.W @ cov / m.s**2  # (k, 4, D - m)
    chol = math.sqrt(1.1) * torch.linalg.cholesky(cov)  # a little wider than p(v | u, x)
    eps = torch.randn(mean.shape, generator=g, dtype=x.dtype)
    v = mean + eps @ chol.T
    d = latent_dim
    log_q = -0.5 * eps.square().sum(-1) - chol.diagonal().log().sum() - 0.5 * (d - mm) * math.log(2 * math.pi)
    lp, ll = from_pyro_model(m.model, x).log_joint(torch.cat([u, v], -1))
    log_w = lp + ll - log_q + 0.5 * u.square().sum(-1) + 0.5 * mm * math.log(2 * math.pi)
    est = torch.logsumexp(log_w, 0) - math.log(k)
    w = torch.softmax(log_w, 0)
    se = (k * w.square().sum(0) - 1).clamp_min(0).sqrt() / math.sqrt(k)  # delta-method se of log mean
    assert ((est - m.log_evidence(x)).abs() < 4 * se + 1e-3).all(), (est - m.log_evidence(x), se)
    assert (se < 0.05).all()


@pytest.mark.parametrize("latent_dim", [10, 20, 50])
def test_posteriors_have_two_basins_and_no_laplace_fit_is_exact(latent_dim):
    m = CurvedDecoder.random(latent_dim, seed=0)
    x = m.simulate(16, seed=1)
    bas = m.basins(x)
    assert torch.allclose(torch.logsumexp(bas["log_mass"], -1), torch.zeros(16, dtype=x.dtype), atol=1e-9)
    assert int(((bas["log_mass"].exp() > 0.05).sum(-1) > 1).sum()) >= 8
    # a Laplace fit at the heaviest basin's optimum misjudges that basin's mass by > 0.1 nats on several points
    i, k = torch.arange(16), bas["log_mass"].argmax(-1)
    fit = laplace_fit(from_pyro_model(m.model, x), bas["mean"][i, k][None], steps=30)
    laplace = fit.log_joint + fit.log_det_scale + 0.5 * latent_dim * math.log(2 * math.pi)
    exact = bas["log_mass"][i, k] + m.log_evidence(x)
    assert int(((laplace - exact).abs() > 0.1).sum()) >= 4, laplace - exact


def test_two_nonlinear_latents_make_up_to_four_basins():
    m = CurvedDecoder.random(10, nonlinear_dim=2, seed=0)
    x = m.simulate(16, seed=1)
    mass = m.basins(x, num=201)["log_mass"].exp()  # (16, 4)
    assert mass.shape == (16, 4) and int(((mass > 0.05).sum(-1) >= 3).sum()) >= 3
    assert (m.log_evidence(x, 201) - m.log_evidence(x)).abs().max() < 1e-6


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="nonlinear_dim"):
        CurvedDecoder.random(10, nonlinear_dim=3)
