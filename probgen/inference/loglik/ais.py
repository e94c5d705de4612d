"""Annealed importance sampling (AIS) from the prior to the posterior, with HMC transitions.

Neal (2001); Wu et al. (2017) for decoders. The intermediate targets are f_t(z) = p(z) p(x | z)^beta_t
for 0 = beta_0 < ... < beta_T = 1. Each chain starts at a prior draw, moves by one HMC transition that
leaves f_t invariant at every intermediate temperature, and carries the log weight
sum_t (beta_t - beta_{t-1}) log p(x | z_{t-1}). The mean of the weights over chains is an unbiased
estimate of p(x), so its log is a stochastic lower bound of log p(x). Run backwards from an exact
posterior draw (:func:`anneal` with decreasing betas, as BDMC does), the weights are unbiased for
1 / p(x) instead.

Unbiasedness needs every transition to be fixed before the weighted chains run: a step size adapted
on the chains' own acceptances makes the transition at temperature t depend on the chains' past,
and the weights are no longer importance weights. :func:`ais` therefore adapts the per-point step
sizes on a separate pilot run, discarded, and replays that frozen schedule of step sizes on the
weighted chains (``pilot_chains`` / ``num_chains`` of extra work; 1/4 by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import scipy.stats
import torch

from probgen.config.estimators import AISSettings
from probgen.config.estimators import pilot_chains as default_pilot
from probgen.inference.loglik.result import LoglikResult, _logmeanexp, _result
from probgen.inference.loglik.temperatures import (
    ais_schedule,
    geometric_schedule,
    geometric_sigmoid_schedule,
    interpolate_steps,
    respace_schedule,
    sigmoid_schedule,
)
from probgen.inference.loglik.weights import log_weight_summary
from probgen.inference.mcmc.potential import LatentTarget
from probgen.inference.mcmc.transition import find_reasonable_step_size, hmc_transition, init_state
from probgen.utils.progress import progress as progress_bar

__all__ = [
    "AISPlan",
    "AISRun",
    "ais",
    "ais_schedule",
    "anneal",
    "geometric_schedule",
    "geometric_sigmoid_schedule",
    "interpolate_steps",
    "pilot_plan",
    "respace_schedule",
    "run_info",
    "sigmoid_schedule",
    "tempered_inverse_mass",
    "variance_threshold_factor",
]

#: A point is flagged ``ais-variance`` when the variance of its log weights is probably above this:
#: when the sample variance of its C chains exceeds this x :func:`variance_threshold_factor` (C), set
#: so that a point whose true variance is this is flagged 4 times in 5 whatever C (with 4 chains a
#: fixed threshold let a true variance of 2 pass a third of the time) ...
MAX_LOG_WEIGHT_VAR = 1.0
#: ... or when the effective number of chains, (sum w)^2 / sum w^2, is below max(2, this x C) (one
#: chain dominating at a small variance; ESS >= 1 always, so "< C / 4" alone was dead at 4 chains).
MIN_ESS_FRACTION = 0.25
#: the probability with which a point whose log weights' true variance is MAX_LOG_WEIGHT_VAR is flagged
VARIANCE_FLAG_POWER = 0.8
#: The adaptive stop believes a point's se only once it comes from at least this many chains (the
#: delta-method se of 4 chains is too noisy: measured, it let a point stop 3.5 se above the truth).
MIN_STOP_CHAINS = 8


def variance_threshold_factor(chains: torch.Tensor) -> torch.Tensor:
    """chi2_{C-1}^{-1}(1 - :data:`VARIANCE_FLAG_POWER`) / (C - 1) per point (chains (N,)): the factor of
    :data:`MAX_LOG_WEIGHT_VAR` above which the sample variance of C normal log weights lies with
    probability VARIANCE_FLAG_POWER when their true variance is MAX_LOG_WEIGHT_VAR (0.34 at C = 4,
    0.55 at 8, 0.69 at 16, 0.78 at 32; tests/inference/loglik/test_ais.py checks the rate)."""
    dof = (chains.double().cpu().clamp_min(2) - 1).numpy()
    return torch.from_numpy(scipy.stats.chi2.ppf(1 - VARIANCE_FLAG_POWER, dof) / dof)


def tempered_inverse_mass(posterior_variance: torch.Tensor) -> Callable[[float], torch.Tensor]:
    """Diagonal inverse mass (N, D) at each temperature from an approximate posterior variance (N, D).

    With a standard normal prior and a Gaussian approximation N(m, v) of the posterior (the encoder's
    q), the likelihood contributes precision 1/v - 1, so f_beta has precision about
    1 + beta (1/v - 1); its inverse is the variance that HMC's inverse mass should match.
    """
    lik_precision = (1.0 / posterior_variance - 1.0).clamp_min(0.0)

    def at(beta: float) -> torch.Tensor:
        return 1.0 / (1.0 + beta * lik_precision)

    return at


class AISRun(NamedTuple):
    """One annealing run: log weights (C, N), final states (C, N, D), the step sizes used at each
    temperature (T + 1, N; row t is the step of the transition at beta_t, rows 0 and T unused), the
    mean acceptance probability of all transitions (N,), and the standard deviation over chains of
    log p(x | z) where step t's weight increment is taken (T + 1, N; row 0 unused)."""

    log_w: torch.Tensor
    z: torch.Tensor
    step_sizes: torch.Tensor
    accept_rate: torch.Tensor
    log_lik_sd: torch.Tensor


def anneal(
    target: LatentTarget,
    z0: torch.Tensor,
    betas: torch.Tensor,
    step_size: torch.Tensor,
    leapfrog_steps: int = 10,
    adapt: bool = False,
    target_accept_prob: float = 0.65,
    inverse_mass: Callable[[float], torch.Tensor] | None = None,
    jitter: float = 0.1,
    progress: bool = False,
    desc: str = "AIS",
) -> AISRun:
    """Move chains z0 (C, N, D) through the temperatures ``betas`` (T + 1 values), one HMC transition
    per intermediate temperature, accumulating log weights sum_t (beta_t - beta_{t-1}) log p(x | z_{t-1}).

    z0 must be exact draws from f at ``betas[0]``: prior draws for a forward run (betas 0 -> 1, the
    weights are unbiased for p(x)), posterior draws for a reverse run (betas 1 -> 0, unbiased for
    1 / p(x)). ``step_size`` is (T + 1, N), row t used at ``betas[t]``, or (N,) with ``adapt=True``:
    then each point's step size is multiplied by exp(0.5 (a - target_accept_prob)) after every
    temperature, a = its acceptance averaged over chains (Wu et al. use +-2%, too slow to follow a
    posterior that sharpens 1000-fold). Adapting makes the weights depend on their own chains: use it
    for pilot runs only. ``inverse_mass(beta)`` gives a diagonal inverse mass (N, D) per temperature.
    Runs with no host synchronisation.
    """
    num_steps = betas.numel() - 1
    if num_steps < 1:
        raise ValueError(f"need at least 2 temperatures, got {betas.numel()}")
    if adapt != (step_size.dim() == 1):
        raise ValueError("give step_size (N,) with adapt=True or a schedule (T + 1, N) with adapt=False")
    beta = betas.tolist()
    state = init_state(target.potential(beta[0]), z0)
    log_w = torch.zeros(z0.shape[:2], dtype=torch.float64, device=z0.device)
    steps = step_size.new_zeros((num_steps + 1, z0.shape[1])) if adapt else step_size
    step = step_size
    accept_sum = z0.new_zeros(z0.shape[1])
    ll_sd = log_w.new_zeros((num_steps + 1, z0.shape[1]))
    with progress_bar(total=num_steps, desc=desc, enabled=progress) as bar:
        for t in range(1, num_steps + 1):
            bar.update()
            log_w += (beta[t] - beta[t - 1]) * state.aux.double()  # log f_t(z) - log f_{t-1}(z), aux = log p(x|z)
            if z0.shape[0] > 1:
                ll_sd[t] = state.aux.double().std(0)
            if t == num_steps:
                break
            potential = target.potential(beta[t])
            state = init_state(potential, state.z)  # the gradient changes with beta
            if adapt:
                steps[t] = step
            mass = None if inverse_mass is None else inverse_mass(beta[t])
            state, acc, _ = hmc_transition(state, potential, steps[t], leapfrog_steps, mass, jitter=jitter)
            acc = acc.mean(0)
            accept_sum += acc
            if adapt:
                step = step * torch.exp(0.5 * (acc - target_accept_prob))
    return AISRun(log_w, state.z, steps, accept_sum / max(num_steps - 1, 1), ll_sd)


def run_info(
    num_chains: int,
    pilot_chains: int,
    num_steps: int,
    leapfrog_steps: int,
    schedule: str | torch.Tensor,
    posterior_variance: torch.Tensor | None,
    run: AISRun,
) -> dict[str, object]:
    """The settings of an AIS run, for :attr:`LoglikResult.info` (and loglik.json)."""
    return {
        "chains": num_chains,
        "pilot_chains": pilot_chains,
        "ais_steps": num_steps,
        "leapfrog_steps": leapfrog_steps,
        "schedule": schedule if isinstance(schedule, str) else "custom",
        "diagonal_mass": posterior_variance is not None,
        "accept_rate_mean": float(run.accept_rate.mean()),
    }


def _result_with_flags(
    method: str,
    target: LatentTarget,
    log_px: torch.Tensor,
    log_w: torch.Tensor,
    counts: torch.Tensor | None = None,
    **info: object,
) -> LoglikResult:
    """The result of weights ``log_w`` (C, N), with ``counts`` (N,) of its rows per point when they
    differ (see :func:`log_weight_summary`; then also ``per_point["chains"]``)."""
    summary = {k: v.detach().cpu() for k, v in log_weight_summary(log_w, counts).items()}
    result = _result(method, log_px, target, **info)
    result.se = summary.pop("se")
    result.per_point = summary
    if counts is not None:
        result.per_point["chains"] = counts.detach().double().cpu()
    _flag_variance(result, result.per_point.get("chains", torch.full_like(result.log_px, float(log_w.shape[0]))))
    return result


def _flag_variance(result: LoglikResult, chains: torch.Tensor) -> None:
    """Flag ``ais-variance`` where the log weights vary too much over the ``chains`` (N,) of a point."""
    summary = result.per_point
    chains = chains.double().cpu()
    var_max = MAX_LOG_WEIGHT_VAR * variance_threshold_factor(chains)
    bad = (summary["log_weight_var"] > var_max) | (summary["weights_ess"] < (MIN_ESS_FRACTION * chains).clamp_min(2))
    bad |= ~torch.isfinite(result.log_px)
    for i in torch.nonzero(bad).flatten().tolist():
        result.add_flag(i, "ais-variance")
    result.info["num_ais_variance"] = int(bad.sum())


class AISPlan(NamedTuple):
    """A frozen annealing plan: inverse temperatures (T + 1,) and the step size of each (T + 1, N)."""

    betas: torch.Tensor
    step_sizes: torch.Tensor


def _initial_step(target: LatentTarget, z: torch.Tensor) -> torch.Tensor:
    prior = target.potential(0.0)
    return find_reasonable_step_size(init_state(prior, z), prior, z.new_full((target.num_data,), 0.1))


def pilot_plan(
    target: LatentTarget,
    num_steps: int,
    pilot_chains: int,
    schedule: str | torch.Tensor = "adaptive",
    leapfrog_steps: int = 10,
    target_accept_prob: float = 0.65,
    inverse_mass: Callable[[float], torch.Tensor] | None = None,
    delta: float = 4.0,
    progress: bool = False,
) -> AISPlan:
    """Run a pilot AIS of ``pilot_chains`` chains that adapts each point's step size per temperature,
    and return the frozen plan for the weighted runs; the pilot's chains and weights are discarded.

    With ``schedule="adaptive"`` the pilot runs on :func:`geometric_schedule` and the plan's
    temperatures are :func:`respace_schedule` of it (equal log-weight variance per step), with the
    pilot's step sizes interpolated onto them. The plan depends on the pilot's random numbers only, so
    weighted chains run on it keep unbiased weights.
    """
    if pilot_chains < 1:
        raise ValueError(f"a pilot needs pilot_chains >= 1, got {pilot_chains}")
    betas = ais_schedule(num_steps, schedule, delta)
    z = target.sample_prior(pilot_chains)
    run = anneal(
        target,
        z,
        betas,
        _initial_step(target, z),
        leapfrog_steps,
        adapt=True,
        target_accept_prob=target_accept_prob,
        inverse_mass=inverse_mass,
        progress=progress,
        desc="AIS pilot",
    )
    if isinstance(schedule, str) and schedule == "adaptive":
        new = respace_schedule(betas, run.log_lik_sd, num_steps)
        return AISPlan(new, interpolate_steps(betas, run.step_sizes, new))
    return AISPlan(betas, run.step_sizes)


def ais(
    target: LatentTarget,
    num_chains: int = AISSettings.chains,
    num_steps: int = AISSettings.steps,
    leapfrog_steps: int = AISSettings.leapfrog_steps,
    target_accept_prob: float = AISSettings.target_accept,
    delta: float = 4.0,
    progress: bool = False,
    *,
    schedule: str | torch.Tensor = "adaptive",
    pilot_chains: int | None = None,
    posterior_variance: torch.Tensor | None = None,
    return_states: bool = False,
    target_se: float | None = None,
    max_chains: int | None = None,
) -> LoglikResult | tuple[LoglikResult, torch.Tensor]:
    """Annealed importance sampling from the prior to the posterior, with HMC transitions (Wu et al. 2017).

    Intermediate targets p(z) p(x | z)^beta_t; one HMC transition of ``leapfrog_steps`` steps per
    temperature. A pilot run of ``pilot_chains`` chains (default
    :func:`~probgen.config.estimators.pilot_chains`: max(2, num_chains // 4), i.e. 1/4 of the
    work of the weighted chains at 16 chains) adapts each point's step size per temperature
    towards ``target_accept_prob`` and, with ``schedule="adaptive"`` (the default), places the
    temperatures so that every step adds the same log-weight variance (:func:`pilot_plan`); the
    ``num_chains`` weighted chains then replay that frozen plan, so that the estimate stays unbiased
    for p(x). ``schedule`` may also be ``geometric``, ``geometric-sigmoid``, ``sigmoid`` or a tensor
    of T + 1 temperatures; ``pilot_chains=0`` adapts the step sizes on the weighted chains themselves
    (biased; kept for comparison). ``posterior_variance`` (N, D), e.g. the encoder's variance, sets a
    diagonal mass per temperature (:func:`tempered_inverse_mass`).

    log p(x) per point is the log mean of the ``num_chains`` importance weights; ``se`` is its
    standard error over the chains (:func:`log_weight_summary`: the delta method's, floored by the
    log-normal one), ``per_point`` holds the variance of
    the log weights and the weights' ESS over chains, and a point is flagged ``ais-variance`` when that
    variance is probably above :data:`MAX_LOG_WEIGHT_VAR` = 1 (its sample value above 1 x
    :func:`variance_threshold_factor`: 0.55 at 8 chains) or the ESS is below max(2, C / 4). (For
    roughly log-normal weights with variance s^2 of log w, the delta-method se is
    sqrt((e^{s^2} - 1) / C) and the bias of log mean(w) about -(e^{s^2} - 1) / (2C): at s^2 = 1 and
    C = 16 these are 0.33 and 0.05 nats; beyond, the se itself is estimated from the few largest
    weights and becomes unreliable, and ESS / C ~ e^{-s^2} falls below 1/4 at s^2 = 1.4.)

    With ``return_states`` it also returns the chains' final states (C, N, D), approximate posterior
    draws from every basin AIS found (e.g. overdispersed starts for Appendix D chains).

    **Adaptive stop.** With ``target_se`` > 0, after the first ``num_chains`` chains every point whose
    se is above ``target_se`` (or that has fewer than :data:`MIN_STOP_CHAINS` = 8 chains) gets
    ``num_chains`` more (on the same frozen plan, so all its chains' weights are exchangeable), round
    after round, until its se is at most ``target_se`` or it has
    ``max_chains`` (default 8 x ``num_chains``); points that end above the target are flagged
    ``se-above-target``, and ``per_point["chains"]`` says how many chains each point got. Only the
    points still above the target are annealed in a round (:meth:`LatentTarget.subset`). The stop
    looks at the weights, so it is a sequential rule: it stops early mostly when no large weight has
    been drawn yet, which errs low, the direction a lower bound allows (measured in the tests).
    """
    if num_chains < 1 or num_steps < 1 or leapfrog_steps < 1:
        raise ValueError(
            f"need num_chains, num_steps, leapfrog_steps >= 1, got {num_chains}, {num_steps}, {leapfrog_steps}"
        )
    pilot = default_pilot(num_chains) if pilot_chains is None else pilot_chains
    if pilot < 0:
        raise ValueError(f"pilot_chains must be >= 0, got {pilot_chains}")
    mass = None if posterior_variance is None else tempered_inverse_mass(posterior_variance)
    common = {"leapfrog_steps": leapfrog_steps, "inverse_mass": mass, "target_accept_prob": target_accept_prob}
    if target_se is not None and target_se > 0 and pilot == 0:
        raise ValueError("the adaptive stop adds chains on a frozen plan: it needs pilot_chains >= 1")
    if pilot > 0:
        plan = pilot_plan(target, num_steps, pilot, schedule, delta=delta, progress=progress, **common)
        run = anneal(target, target.sample_prior(num_chains), plan.betas, plan.step_sizes, progress=progress, **common)
        if target_se is not None and target_se > 0:
            cap = max_chains if max_chains is not None else 8 * num_chains
            log_w, chains = _add_chains(target, plan, run.log_w, num_chains, target_se, cap, progress, common)
            info = run_info(num_chains, pilot, num_steps, leapfrog_steps, schedule, posterior_variance, run)
            log_px = torch.logsumexp(log_w, 0) - chains.double().log()
            result = _result_with_flags(
                "ais", target, log_px, log_w, chains, target_se=target_se, max_chains=cap, **info
            )
            above = ~(result.se <= target_se)  # nan (one chain) counts as above
            for i in torch.nonzero(above).flatten().tolist():
                result.add_flag(i, "se-above-target")
            result.info["num_se_above_target"] = int(above.sum())
            result.info["chains_total"] = int(chains.sum())
            return (result, run.z) if return_states else result
    elif isinstance(schedule, str) and schedule == "adaptive":
        raise ValueError("the adaptive schedule is made by a pilot run: pilot_chains must be >= 1")
    else:
        z = target.sample_prior(num_chains)
        betas = ais_schedule(num_steps, schedule, delta)
        run = anneal(target, z, betas, _initial_step(target, z), adapt=True, progress=progress, **common)
    info = run_info(num_chains, pilot, num_steps, leapfrog_steps, schedule, posterior_variance, run)
    result = _result_with_flags("ais", target, _logmeanexp(run.log_w, 0), run.log_w, **info)
    return (result, run.z) if return_states else result


def _add_chains(
    target: LatentTarget,
    plan: AISPlan,
    log_w: torch.Tensor,
    per_round: int,
    target_se: float,
    cap: int,
    progress: bool,
    common: dict[str, object],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log weights (C', N) of every point's chains and their number per point (N,): the first
    run's (``log_w``, (C, N)), then ``per_round`` more in each round for the points whose se is still
    above ``target_se`` or that have fewer than :data:`MIN_STOP_CHAINS` (rows past a point's count
    are -inf). One host read per round, for the list of points that need more."""
    n = log_w.shape[1]
    padded = log_w.new_full((max(cap, log_w.shape[0]), n), -math.inf)
    padded[: log_w.shape[0]] = log_w
    chains = torch.full((n,), log_w.shape[0], dtype=torch.long, device=log_w.device)
    while True:
        top = int(chains.max())
        se = log_weight_summary(padded[:top], chains)["se"]
        # se is nan with one chain: such a point needs more chains too
        need = ((chains < MIN_STOP_CHAINS) | ~(se <= target_se)) & (chains + per_round <= cap)
        index = torch.nonzero(need).flatten()
        if index.numel() == 0:
            return padded[:top], chains
        sub = target.subset(index)
        steps = plan.step_sizes[:, index.to(plan.step_sizes.device)]
        extra = anneal(sub, sub.sample_prior(per_round), plan.betas, steps, progress=progress, desc="AIS, more chains",
                       **common)  # fmt: skip
        rows = chains[index][None, :] + torch.arange(per_round, device=log_w.device)[:, None]  # (per_round, M)
        padded[rows, index[None, :]] = extra.log_w.to(padded.dtype)
        chains[index] += per_round
