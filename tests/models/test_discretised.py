import math

import mpmath
import pytest
import torch

from probgen.models.discretised import DiscretisedNormal, log_normal_mass

LEVELS = torch.arange(256, dtype=torch.float64) / 255


@pytest.mark.parametrize(
    "loc, scale", [(0.3, 0.1), (0.0, 1e-3), (0.999, 1e-3), (0.5, 5.0), (0.2, 1e-5), (1.7, 0.01), (-3.0, 0.01)]
)
def test_the_256_bins_are_a_probability_distribution(loc, scale):
    lp = DiscretisedNormal(torch.full((256,), loc, dtype=torch.float64), torch.tensor(scale)).log_prob(LEVELS)
    assert torch.isfinite(lp).all() and (lp <= 0).all()  # a probability: log P <= 0, bits/dim >= 0
    assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-9)


def test_sharp_gaussian_is_positive_as_a_density_but_not_as_a_probability():
    x = torch.tensor([0.0, 128 / 255, 1.0])
    density = torch.distributions.Normal(x, 1e-3).log_prob(x)  # +5.99 nats per pixel: bits/dim < 0
    assert (density > 0).all()
    lp = DiscretisedNormal(x, torch.tensor(1e-3)).log_prob(x)
    # the bin (+-1.96 sds) holds 95% of the mass, the outer bins 97.5% (their outer half is open)
    assert lp.tolist() == pytest.approx([math.log(0.975), math.log(0.95), math.log(0.975)], abs=1e-3)


def test_wide_gaussian_is_the_density_times_the_bin_width():
    loc = torch.full((256,), 0.4, dtype=torch.float64)
    lp = DiscretisedNormal(loc, torch.tensor(0.1, dtype=torch.float64)).log_prob(LEVELS)
    dens = torch.distributions.Normal(loc, 0.1).log_prob(LEVELS) - math.log(255)
    assert (lp - dens)[40:160].abs().max() < 1e-3  # interior bins; the open outer ones hold the tails


def test_tail_masses_are_accurate_and_gradients_finite():
    lo, hi = [-40.0, 30.0, -0.1, 5.0], [-39.9, 30.5, 0.2, 5.001]
    mass = [mpmath.ncdf(b) - mpmath.ncdf(a) if b <= 0 else mpmath.ncdf(-a) - mpmath.ncdf(-b) for a, b in zip(lo, hi)]
    exact = [float(mpmath.log(m)) for m in mass]  # mpmath, each difference on its small side
    got = log_normal_mass(torch.tensor(lo), torch.tensor(hi))
    assert got.tolist() == pytest.approx(exact, rel=1e-4)
    loc = torch.tensor([0.0, 0.5, 1.0, 0.9, 0.0], requires_grad=True)
    x = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    DiscretisedNormal(loc, torch.tensor(1e-3)).log_prob(x).sum().backward()
    assert torch.isfinite(loc.grad).all()
    assert (loc.grad[[0, 3]] > 0).all() and (loc.grad[[1, 2, 4]] < 0).all()  # towards the observed level


def test_samples_are_levels():
    s = DiscretisedNormal(torch.full((1000,), 0.5), torch.tensor(0.3)).sample((2,))
    assert s.shape == (2, 1000) and torch.allclose(s * 255, (s * 255).round()) and s.min() >= 0 and s.max() <= 1
