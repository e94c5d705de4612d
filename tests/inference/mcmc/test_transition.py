import pytest
import torch

from probgen.inference.mcmc.transition import find_reasonable_step_size, hmc_transition, init_state
from probgen.inference.testing.ppca import PPCA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rejected_points_keep_their_state_and_others_move():
    m = PPCA.random(obs_dim=5, latent_dim=2)
    x = m.simulate(3)
    target = m.target(x)
    state = init_state(target.potential(), target.sample_prior(2))
    # a huge step for point 0 only: its energy error explodes and it must stay where it was
    step = torch.tensor([1e4, 0.01, 0.01], dtype=torch.float64)
    new, accept_prob, diverging = hmc_transition(state, target.potential(), step, 3)
    assert (accept_prob[:, 0] == 0).all() and diverging[:, 0].all()
    assert torch.equal(new.z[:, 0], state.z[:, 0]) and torch.equal(new.potential[:, 0], state.potential[:, 0])
    assert (accept_prob[:, 1:] > 0.9).all() and not torch.equal(new.z[:, 1:], state.z[:, 1:])


def test_reasonable_step_size_brackets_the_acceptance_threshold():
    # one leapfrog step on N(0, sigma^2): accept prob ~ 1 - O((eps / sigma)^4); the search doubles or
    # halves per point until the mean acceptance crosses 0.8, so eps ends within a factor 2 of the crossing
    sigma = torch.tensor([0.01, 1.0, 100.0], dtype=torch.float64)

    def potential(z):
        return 0.5 * (z / sigma[:, None]).square().sum(-1)

    torch.manual_seed(0)
    state = init_state(potential, torch.randn(64, 3, 2, dtype=torch.float64) * sigma[:, None])
    eps = find_reasonable_step_size(state, potential, torch.full((3,), 0.1, dtype=torch.float64))
    ratio = eps / sigma
    assert torch.allclose(ratio, ratio[1].expand(3), rtol=1.01)  # scale-free: within a factor 2
    assert (ratio > 0.3).all() and (ratio < 4).all()


def _whitened_after_transitions(num_chains: int, transitions: int):
    """Start ``num_chains`` chains per point at EXACT draws of 8 PPCA posteriors, run transitions with
    per-point step sizes, masses and numbers of leapfrog steps (1 to 13: most points are frozen for
    part of each trajectory), and return the chains whitened by the exact posterior, (C, N, 2)."""
    m = PPCA.random(obs_dim=6, latent_dim=2, s=0.5, seed=7)
    x = m.simulate(8, seed=7)
    potential = m.target(x).potential()
    mean, cov = m.posterior(x)
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(0)
    z = mean + torch.randn(num_chains, 8, 2, generator=g, dtype=torch.float64) @ chol.T
    inverse_mass = cov.diagonal() * torch.linspace(0.5, 2.0, 8, dtype=torch.float64)[:, None]  # (N, D)
    step = torch.linspace(0.15, 0.6, 8, dtype=torch.float64)
    steps = torch.tensor([1, 2, 3, 5, 8, 13, 4, 7])
    torch.manual_seed(1)
    state = init_state(potential, z)
    accept = []
    for _ in range(transitions):
        state, acc, _ = hmc_transition(state, potential, step, steps, inverse_mass, jitter=0.2, max_steps=13)
        accept.append(acc.mean())
    u = torch.linalg.solve_triangular(chol, (state.z - mean).unsqueeze(-1), upper=False).squeeze(-1)
    return u, float(torch.stack(accept).mean())


def _moment_errors(u: torch.Tensor):
    c = u.shape[0]
    z_mean = u.mean(0) * c**0.5  # (N, D), each N(0, 1) if the kernel leaves the posterior invariant
    var_err = u.var(0) - 1  # each with sd sqrt(2 / C)
    z_cross = (u[..., 0] * u[..., 1]).mean(0) * c**0.5
    return z_mean, var_err, z_cross


def test_transitions_leave_exact_posterior_draws_exact_with_per_point_steps(monkeypatch):
    c = 40000  # the variance of each of 16 coordinates to 0.7%, their mean to 0.18%
    u, accept = _whitened_after_transitions(c, 2)
    assert 0.85 < accept < 0.99  # the accept test matters
    z_mean, var_err, z_cross = _moment_errors(u)
    se_var = (2 / c) ** 0.5
    assert z_mean.abs().max() < 4.5 and z_cross.abs().max() < 4.5
    assert var_err.abs().max() < 4.5 * se_var
    assert abs(float(var_err.mean())) < 4 * se_var / 4  # pooled over 16 coordinates: a 1% error fails

    # the same check catches a kernel without its Metropolis test (always accept: rand_like -> 0)
    monkeypatch.setattr(torch, "rand_like", torch.zeros_like)
    u, _ = _whitened_after_transitions(c, 2)
    _, var_err, _ = _moment_errors(u)
    assert var_err.abs().max() > 4.5 * se_var
