import math

import arviz as az
import numpy as np
import pyro
import pytest
import torch
from pyro.infer import MCMC

from probgen.inference.mcmc.hmc import BatchedHMC, run_hmc
from probgen.inference.mcmc.potential import LatentTarget, from_pyro_model
from probgen.inference.mcmc.reference import run_nuts
from probgen.inference.testing.ppca import PPCA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _moment_zscores(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor):
    """Errors of the posterior mean and variance of samples (C, S, N, D), in Monte Carlo standard errors.

    The standard error of a mean is sd / sqrt(ESS(z)); of a variance, var * sqrt(2 / ESS((z - mean)^2))
    (Gaussian posterior), with ArviZ's bulk ESS of each coordinate. Both ESS are needed: a trajectory
    near half a period reflects z -> -z, which decorrelates z but not z^2."""
    c, s, n, d = samples.shape
    x = samples.numpy()
    sq = (samples - mean).square().numpy()
    ess = torch.as_tensor(np.stack([[az.ess(x[:, :, i, j]) for j in range(d)] for i in range(n)]))
    ess_sq = torch.as_tensor(np.stack([[az.ess(sq[:, :, i, j]) for j in range(d)] for i in range(n)]))
    sd = cov.diagonal().sqrt()
    flat = samples.reshape(c * s, n, d)
    z_mean = (flat.mean(0) - mean) / (sd / ess.sqrt())
    z_var = (flat.var(0) / cov.diagonal() - 1) / (2 / ess_sq).sqrt()
    return z_mean, z_var, torch.minimum(ess, ess_sq)


def test_batched_hmc_recovers_the_exact_ppca_posterior():
    pyro.set_rng_seed(0)
    m = PPCA.random(obs_dim=12, latent_dim=3, s=0.5)
    x = m.simulate(6)
    target = m.target(x)
    run = run_hmc(target.potential(), target.sample_prior(4), 200, 400, num_steps=8)
    assert run.samples.shape == (4, 400, 6, 3)
    assert run.potential.shape == run.accept_prob.shape == run.diverging.shape == (4, 400, 6)
    mean, cov = m.posterior(x)
    z_mean, z_var, ess = _moment_zscores(run.samples, mean, cov)
    assert ess.min() > 200  # the chains move
    assert z_mean.abs().max() < 4.5 and z_var.abs().max() < 4.5  # 36 comparisons at ~1e-5 two-sided each
    # full covariance, incl. the correlations the diagonal mass does not know about
    flat = run.samples.reshape(-1, 6, 3)
    emp = torch.stack([torch.cov(flat[:, i].T) for i in range(6)])
    corr = cov / cov.diagonal().sqrt().outer(cov.diagonal().sqrt())
    emp_corr = (
        emp / emp.diagonal(dim1=-2, dim2=-1).sqrt().unsqueeze(-1) / emp.diagonal(dim1=-2, dim2=-1).sqrt().unsqueeze(-2)
    )
    assert (emp_corr - corr).abs().max() < 4.5 * (1 - corr.square()).max() / ess.min().sqrt()
    # -potential is log p(z, x) of the stored draw
    lp, ll = target.log_joint(run.samples[:, -1])
    assert torch.allclose(-run.potential[:, -1], lp + ll)
    assert run.num_divergent.sum() == 0 and (run.accept_rate > 0.6).all()
    assert run.num_grad_evals >= 4 * 6 * 600 * 8


def test_each_point_gets_its_own_step_size_and_accept_test():
    # two points whose posteriors differ 100x in scale: one shared step size would freeze one of them
    scales = torch.tensor([0.01, 1.0], dtype=torch.float64)

    def log_joint(z):
        lp = -0.5 * (z / scales[:, None]).square().sum(-1)
        return lp, torch.zeros_like(lp)

    target = LatentTarget(log_joint, lambda c: torch.randn(c, 2, 2, dtype=torch.float64), 2, 2, 1)
    pyro.set_rng_seed(1)
    run = run_hmc(target.potential(), 0.01 * target.sample_prior(4), 150, 200, num_steps=5, adapt_mass_matrix=False)
    ratio = run.step_size[1] / run.step_size[0]
    assert 30 < ratio < 300  # step sizes follow each posterior's scale
    assert ((run.accept_rate > 0.6) & (run.accept_rate < 0.99)).all()
    sd = run.samples.reshape(-1, 2, 2).std(0)
    assert torch.allclose(sd, scales[:, None].expand(2, 2), rtol=0.25)


def test_no_host_sync_inside_transitions(monkeypatch):
    m = PPCA.random(obs_dim=5, latent_dim=2)
    target = from_pyro_model(m.model, m.simulate(3))
    kernel = BatchedHMC(potential_fn=target.potential(), num_steps=4)
    kernel.initial_params = {"z": target.sample_prior(2)}
    kernel.setup(warmup_steps=60)  # Stan windows [0, 8], [9, 53], [54, 59]
    params = kernel.initial_params

    def sync(*args, **kwargs):
        raise AssertionError("host sync inside an HMC transition")

    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    with pytest.raises(AssertionError, match="host sync"):
        bool(torch.ones(()) > 0)  # the trap works
    for _ in range(70):  # dual averaging, the Welford window, the step-size search, end of warm-up, sampling
        params = kernel.sample(params)
    monkeypatch.undo()
    assert params["z"].shape == (2, 3, 2) and kernel.step_size.shape == (3,)
    assert kernel.inverse_mass is not None and not torch.equal(
        kernel.inverse_mass, torch.ones_like(kernel.inverse_mass)
    )
    assert set(kernel.logging()) == {"step size", "acc. prob"}


def test_kernel_runs_under_pyro_mcmc_from_a_model():
    pyro.set_rng_seed(2)
    m = PPCA.random(obs_dim=8, latent_dim=2, s=0.5)
    x = m.simulate(3)
    mcmc = MCMC(BatchedHMC(m.model, num_chains=2, num_steps=6), num_samples=300, warmup_steps=150, disable_progbar=True)
    mcmc.run(x)
    z = mcmc.get_samples()["z"]  # (draw, C, N, D): MCMC's one "chain" holds C x N chains
    assert z.shape == (300, 2, 3, 2)
    mean, cov = m.posterior(x)
    z_mean, z_var, _ = _moment_zscores(z.transpose(0, 1), mean, cov)
    assert z_mean.abs().max() < 4.5 and z_var.abs().max() < 4.5
    diag = mcmc.diagnostics()
    assert 0.6 < diag["acceptance rate"]["chain 0"] <= 1.0
    assert diag["step size"]["chain 0"].shape == (3,)


def test_batched_kernel_and_stock_nuts_agree():
    pyro.set_rng_seed(3)
    m = PPCA.random(obs_dim=8, latent_dim=2, s=0.5)
    x = m.simulate(2)
    fns = [m.target(x[i : i + 1]).potential() for i in range(2)]
    z0 = torch.randn(2, 2, 2, dtype=torch.float64)
    nuts = run_nuts(fns, z0, 100, 200)
    ours = run_hmc(m.target(x).potential(), z0, 100, 200, num_steps=6)
    assert nuts.samples.shape == ours.samples.shape == (2, 200, 2, 2)
    a, b = nuts.samples.reshape(-1, 2, 2), ours.samples.reshape(-1, 2, 2)
    sd = m.posterior(x)[1].diagonal().sqrt()
    # both are within Monte Carlo error (<= 400 draws each, ESS >= ~150) of each other
    se = sd * (1 / 150 + 1 / 150) ** 0.5
    assert ((a.mean(0) - b.mean(0)).abs() < 4.5 * se).all()
    assert torch.allclose(a.std(0), b.std(0), rtol=0.3)


def test_bad_kernel_arguments_name_the_value():
    with pytest.raises(ValueError, match="exactly one"):
        BatchedHMC()
    with pytest.raises(ValueError, match="target_accept_prob"):
        BatchedHMC(potential_fn=lambda z: z.sum(-1), target_accept_prob=1.5)
    with pytest.raises(ValueError, match="num_steps"):
        BatchedHMC(potential_fn=lambda z: z.sum(-1), num_steps=0)


def test_trajectory_length_sets_the_number_of_leapfrog_steps():
    pyro.set_rng_seed(4)
    m = PPCA.random(obs_dim=8, latent_dim=2, s=0.5)
    x = m.simulate(3)
    target = m.target(x)
    run = run_hmc(target.potential(), target.sample_prior(2), 100, 50, trajectory_length=2.0, max_num_steps=64)
    expected = torch.ceil(2.0 / run.step_size).clamp(1, 64).long()  # each point its own, by default
    assert torch.equal(run.steps_per_point, expected) and run.num_steps == int(expected.max())
    shared = run_hmc(
        target.potential(),
        target.sample_prior(2),
        100,
        5,
        trajectory_length=2.0,
        max_num_steps=64,
        per_point_steps=False,
    )
    assert shared.steps_per_point is None
    assert shared.num_steps == min(64, math.ceil(2.0 / float(shared.step_size.median())))
    mean, cov = m.posterior(x)
    z_mean, z_var, _ = _moment_zscores(run.samples, mean, cov)
    assert z_mean.abs().max() < 4.5 and z_var.abs().max() < 4.5


def test_per_point_trajectories_run_without_host_sync(monkeypatch):
    m = PPCA.random(obs_dim=5, latent_dim=2)
    target = from_pyro_model(m.model, m.simulate(3))
    kernel = BatchedHMC(potential_fn=target.potential(), trajectory_length=1.5, max_num_steps=16)
    kernel.initial_params = {"z": target.sample_prior(2)}
    kernel.setup(warmup_steps=30)
    params = kernel.initial_params
    for _ in range(30):  # warm-up reads the step counts back every 25 transitions and at its end
        params = kernel.sample(params)
    assert kernel.steps_per_point.shape == (3,) and kernel.num_steps == int(kernel.steps_per_point.max())

    def sync(*args, **kwargs):
        raise AssertionError("host sync inside an HMC transition")

    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    for _ in range(5):
        params = kernel.sample(params)
    monkeypatch.undo()
    assert params["z"].shape == (2, 3, 2)
