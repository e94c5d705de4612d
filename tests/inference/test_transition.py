import torch

from probgen.inference.transition import find_reasonable_step_size, hmc_transition, init_state
from tests.inference.ppca import PPCA


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
