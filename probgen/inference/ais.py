"""Annealed importance sampling (AIS) from the prior to the posterior, with HMC transitions.

Neal (2001); Wu et al. (2017) for decoders. AIS gives an unbiased estimate of p(x), so its log is a
stochastic lower bound of log p(x).
"""

from __future__ import annotations

import torch

from probgen.inference.potential import LatentTarget
from probgen.inference.result import LoglikResult, _logmeanexp, _result
from probgen.inference.transition import find_reasonable_step_size, hmc_transition, init_state
from probgen.utils.progress import progress as progress_bar

__all__ = ["ais", "sigmoid_schedule"]


def sigmoid_schedule(num_steps: int, delta: float = 4.0) -> torch.Tensor:
    """Inverse temperatures beta_0 = 0 < ... < beta_T = 1 (T + 1 values) spaced along a sigmoid
    (Grosse et al. 2015; Wu et al. 2017): dense near 0 and 1, where the intermediate targets change fastest."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    s = torch.sigmoid(delta * (2.0 * torch.arange(num_steps + 1, dtype=torch.float64) / num_steps - 1.0))
    return (s - s[0]) / (s[-1] - s[0])


def ais(
    target: LatentTarget,
    num_chains: int = 16,
    num_steps: int = 1000,
    leapfrog_steps: int = 10,
    target_accept_prob: float = 0.65,
    delta: float = 4.0,
    progress: bool = False,
) -> LoglikResult:
    """Annealed importance sampling from the prior to the posterior, with HMC transitions (Wu et al. 2017).

    Intermediate targets p(z) p(x | z)^beta_t with a :func:`sigmoid_schedule`; one HMC transition of
    ``leapfrog_steps`` steps per temperature. After each temperature, each point's step size is
    multiplied by exp(0.5 (a - target)), a = its acceptance averaged over chains: Wu et al. use a fixed
    +-2%, which cannot follow a posterior that sharpens 100-fold within a few hundred temperatures.
    log p(x) per point is the log mean of the ``num_chains`` importance weights.
    """
    betas = sigmoid_schedule(num_steps, delta).tolist()
    z = target.sample_prior(num_chains)  # (C, N, D)
    state = init_state(target.potential(0.0), z)
    step = find_reasonable_step_size(state, target.potential(0.0), z.new_full((target.num_data,), 0.1))
    log_w = torch.zeros(z.shape[:2], dtype=torch.float64, device=z.device)
    accept_sum = torch.zeros_like(step)
    bar = progress_bar(total=num_steps, desc="AIS", enabled=progress)
    for t in range(1, num_steps + 1):
        bar.update()
        log_w += (betas[t] - betas[t - 1]) * state.aux.double()  # log f_t(z) - log f_{t-1}(z), aux = log p(x|z)
        if t == num_steps:
            break
        potential = target.potential(betas[t])
        state = init_state(potential, state.z)  # the gradient changes with beta
        state, acc, _ = hmc_transition(state, potential, step, leapfrog_steps, jitter=0.1)
        acc = acc.mean(0)
        accept_sum += acc
        step = step * torch.exp(0.5 * (acc - target_accept_prob))
    bar.close()
    info = {
        "chains": num_chains,
        "ais_steps": num_steps,
        "leapfrog_steps": leapfrog_steps,
        "accept_rate_mean": float(accept_sum.mean() / max(num_steps - 1, 1)),
    }
    return _result("ais", _logmeanexp(log_w, 0), target, **info)
