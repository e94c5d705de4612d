"""The HMC loop, AIS and IWAE read nothing back from the device per step (a CPU proxy for GPU syncs)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from probgen.inference.loglik.ais import ais
from probgen.inference.loglik.iwae import elbo_iwae
from probgen.inference.mcmc.hmc import run_hmc
from probgen.inference.mcmc.potential import encoder_proposal
from probgen.inference.testing.ppca import PPCA
from tests.host_reads import count_host_reads

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def target():
    pyro.set_rng_seed(0)
    m = PPCA.random(obs_dim=12, latent_dim=3, s=0.5)
    return m.target(m.simulate(6))


def _guide(loc: torch.Tensor) -> None:
    with pyro.plate("data", loc.shape[0], dim=-1):
        pyro.sample("z", dist.Normal(loc, torch.ones_like(loc)).to_event(1))


def _reads(fn) -> int:  # noqa: ANN001
    with count_host_reads(set()) as counts:
        fn()
    return sum(counts.values())


def test_hmc_loop_makes_no_host_reads(target):
    z0 = target.sample_prior(4)  # (C, N, D)
    assert _reads(lambda: run_hmc(target.potential(), z0, 30, 20, num_steps=4)) == 0  # adaptation included


def test_ais_and_iwae_reads_do_not_grow_with_the_number_of_steps(target):
    few = _reads(lambda: ais(target, num_chains=4, num_steps=20, leapfrog_steps=3))
    many = _reads(lambda: ais(target, num_chains=4, num_steps=80, leapfrog_steps=3))
    # the pilot's plan, the schedules and the per-point summary and flags, once each: none per temperature
    # (15: the ais-variance threshold is a chi-square quantile per point's chain count, taken on the host)
    assert few == many <= 15
    q = encoder_proposal(_guide, torch.zeros(6, 3, dtype=torch.float64))  # as `probgen loglik` builds it
    few = _reads(lambda: elbo_iwae(target, q, num_samples=60, max_batch=60))
    many = _reads(lambda: elbo_iwae(target, q, num_samples=600, max_batch=60))  # 10x the chunks
    assert few == many
