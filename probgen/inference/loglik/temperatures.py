"""Inverse-temperature schedules 0 = beta_0 < ... < beta_T = 1 for AIS (:mod:`probgen.inference.loglik.ais`).

Named schedules (sigmoid, geometric, geometric-then-sigmoid) and the pilot-made one: a pilot run's
spread of log p(x | z) per temperature respaces the steps so that each adds the same log-weight
variance, and its adapted step sizes are interpolated onto the new temperatures.
"""

from __future__ import annotations

import torch

__all__ = [
    "ais_schedule",
    "geometric_schedule",
    "geometric_sigmoid_schedule",
    "interpolate_steps",
    "respace_schedule",
    "sigmoid_schedule",
]


def sigmoid_schedule(num_steps: int, delta: float = 4.0) -> torch.Tensor:
    """Inverse temperatures beta_0 = 0 < ... < beta_T = 1 (T + 1 values) spaced along a sigmoid
    (Grosse et al. 2015; Wu et al. 2017): dense near 0 and 1, where the intermediate targets change fastest."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    s = torch.sigmoid(delta * (2.0 * torch.arange(num_steps + 1, dtype=torch.float64) / num_steps - 1.0))
    return (s - s[0]) / (s[-1] - s[0])


def geometric_sigmoid_schedule(
    num_steps: int, start: float = 1e-7, join: float = 1e-3, delta: float = 4.0, max_fraction: float = 0.5
) -> torch.Tensor:
    """Inverse temperatures that rise geometrically from ``start`` to ``join``, then follow a sigmoid to 1.

    The plain sigmoid's first step is already ~0.15 / T (1.5e-4 at T = 1000). On a sharp posterior (a
    decoder with a small observation scale), log p(x | z) varies over prior draws by thousands of nats,
    so that first step alone changes the log weights by several nats, and the next steps, each
    doubling beta, leave the chains far from equilibrium. Here beta_1 = ``start`` and the first k
    steps multiply beta by a constant factor r up to ``join``; the remaining T - k steps follow the
    sigmoid schedule of T - k steps mapped onto [join, 1]. k is chosen so that r equals the ratio of
    the sigmoid's first two values, so that log beta has no kink at the join (k is at most
    ``max_fraction`` x T). Below ``join`` a broad posterior hardly changes, so those steps cost it
    little; a sharp one gets steps of constant relative size where its likelihood takes over.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 < start < join < 1.0:
        raise ValueError(f"need 0 < start < join < 1, got start={start}, join={join}")
    k = 0
    for k_try in range(2, int(max_fraction * num_steps) + 1):  # the smallest k whose ratio is below the sigmoid's
        first = sigmoid_schedule(num_steps - k_try, delta)[1].item() * (1.0 - join)
        if (join / start) ** (1.0 / (k_try - 1)) <= 1.0 + first / join:
            k = k_try
            break
    else:
        k = int(max_fraction * num_steps)
    if k < 2:
        return sigmoid_schedule(num_steps, delta)
    head = start * (join / start) ** (torch.arange(k, dtype=torch.float64) / (k - 1))  # beta_1 .. beta_k = join
    tail = join + (1.0 - join) * sigmoid_schedule(num_steps - k, delta)[1:]
    return torch.cat([torch.zeros(1, dtype=torch.float64), head, tail])


def geometric_schedule(num_steps: int, start: float = 1e-7) -> torch.Tensor:
    """beta_0 = 0, then ``num_steps`` values from ``start`` to 1 with a constant ratio."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0.0 < start < 1.0:
        raise ValueError(f"start must be in (0, 1), got {start}")
    if num_steps == 1:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    exponent = torch.arange(num_steps, dtype=torch.float64) / (num_steps - 1)
    return torch.cat([torch.zeros(1, dtype=torch.float64), start ** (1.0 - exponent)])


def ais_schedule(
    num_steps: int, schedule: str | torch.Tensor = "geometric-sigmoid", delta: float = 4.0
) -> torch.Tensor:
    """The named beta schedule of ``num_steps`` steps: ``geometric-sigmoid`` (the default) or ``sigmoid``;
    a tensor of T + 1 increasing values from 0 to 1 is checked and returned as float64."""
    if isinstance(schedule, torch.Tensor):
        b = schedule.detach().double().cpu()
        if b.shape != (num_steps + 1,) or b[0] != 0 or b[-1] != 1 or not bool((b.diff() > 0).all()):
            raise ValueError(f"a schedule tensor must hold {num_steps + 1} increasing values from 0 to 1")
        return b
    if schedule == "geometric-sigmoid":
        return geometric_sigmoid_schedule(num_steps, delta=delta)
    if schedule in ("geometric", "adaptive"):  # adaptive: the pilot's grid, respaced after the pilot
        return geometric_schedule(num_steps)
    if schedule == "sigmoid":
        return sigmoid_schedule(num_steps, delta)
    raise ValueError(f"unknown AIS schedule {schedule!r}; known: geometric-sigmoid, sigmoid")


def respace_schedule(
    betas: torch.Tensor, log_lik_sd: torch.Tensor, num_steps: int, uniform_share: float = 0.01
) -> torch.Tensor:
    """A schedule of ``num_steps`` steps on which every step adds about the same log-weight variance.

    Step t adds (beta_t - beta_{t-1}) log p(x | z) to a chain's log weight; at equilibrium its standard
    deviation is (beta_t - beta_{t-1}) sd_beta(log p(x | z)). Given a pilot run on ``betas`` and its
    sd of log p(x | z) per step and point (T + 1, N), averaged over points, the "thermodynamic length"
    L(beta) = integral of sd d beta is split into equal parts; equal parts minimise the summed
    variance, L^2 / T (Gelman & Meng 1998; Grosse et al. 2013). ``uniform_share`` of the length is
    spread uniformly in beta so that no region gets no steps.
    """
    g = log_lik_sd[1:].double().mean(-1).cpu()  # (T,) speed on each pilot interval
    db = betas.diff()
    length = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(db * g, 0)])
    if not float(length[-1]) > 0:
        return betas.clone()
    length = (1.0 - uniform_share) * length / length[-1] + uniform_share * betas
    grid = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)
    i = torch.searchsorted(length, grid, right=True).clamp(1, betas.numel() - 1)
    lo, hi = length[i - 1], length[i]
    frac = ((grid - lo) / (hi - lo).clamp_min(1e-300)).clamp(0.0, 1.0)
    out = betas[i - 1] + frac * db[i - 1]
    out[0], out[-1] = 0.0, 1.0
    return torch.cummax(out, 0).values


def interpolate_steps(betas: torch.Tensor, steps: torch.Tensor, new_betas: torch.Tensor) -> torch.Tensor:
    """Step sizes (T + 1, N) recorded at ``betas`` (rows 1..T-1 used), interpolated linearly in
    log step over log beta at ``new_betas`` (T' + 1 values); returns (T' + 1, N)."""
    if betas.numel() < 4:  # fewer than two recorded temperatures: nothing to interpolate
        return steps[1].expand(new_betas.numel(), -1).clone()
    x = betas[1:-1].log().to(steps.device, steps.dtype)
    y = steps[1:-1].log()
    q = new_betas.clamp_min(float(betas[1])).log().to(steps.device, steps.dtype)
    i = torch.searchsorted(x, q).clamp(1, x.numel() - 1)
    w = ((q - x[i - 1]) / (x[i] - x[i - 1])).clamp(0.0, 1.0).unsqueeze(-1)
    return torch.exp(y[i - 1] * (1 - w) + y[i] * w)
