"""The log-likelihood estimators behind one interface: each is one registered :class:`Estimator` with
``run(inputs, settings)`` and ``cost(settings, n, D)``.

``run`` scores the points of ``inputs`` (:class:`Inputs`: the target, the encoder's q(z | x), and the
Pyro model and data for the samplers that need them) and returns its results by name (BDMC returns two:
``bdmc-lower`` and ``bdmc-upper``; the ELBO/IWAE entry both); Appendix D also returns its chains.
``cost`` counts the decoder evaluations that ``run`` makes on ``n`` points of a ``D``-dimensional latent:
(gradient evaluations, forward-only evaluations), image-level, as ``probgen loglik``'s time estimate
multiplies them by their measured cost (probgen.pipelines.loglik_plan). Appendix D's count takes its
leapfrog steps per transition from ``settings.hmc.leapfrog_steps`` (the planner's assumption when the
trajectory length leaves the choice to warm-up).

Adding an estimator: write its module, then one :func:`register` call here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from probgen.config.estimators import EstimatorSettings
from probgen.errors import UserError
from probgen.inference.loglik.ais import ais
from probgen.inference.loglik.appendix_d import appendix_d_from_samples, overdispersed_init
from probgen.inference.loglik.bdmc import bdmc, simulate
from probgen.inference.loglik.iwae import elbo_iwae
from probgen.inference.loglik.laplace import ais_laplace
from probgen.inference.loglik.laplace_fit import NEWTON_FRACTIONS, NEWTON_STEPS, SEGMENT_POINTS, laplace_starts
from probgen.inference.loglik.result import LoglikResult
from probgen.inference.mcmc.hmc import HMCResult, run_hmc
from probgen.inference.mcmc.potential import LatentTarget, from_pyro_model
from probgen.inference.mcmc.reference import run_nuts

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "Inputs",
    "encoder_variance",
    "estimators_for",
    "laplace_start_points",
    "register",
]

#: the most Hessians a Laplace fit computes: one, then up to len(NEWTON_FRACTIONS) per Newton step
LAPLACE_HESSIANS = 1 + NEWTON_STEPS * len(NEWTON_FRACTIONS)
#: overdispersed_init's annealed particles: 4 per chain it starts, 100 tempered transitions of 5 + 1 gradients
OVERDISPERSED_GRADS = 4 * 100 * (5 + 1)
#: NUTS's gradients per transition on these posteriors (up to 2^depth; a few dozen)
NUTS_GRADS = 30


@dataclass
class Inputs:
    """What the estimators score: the batched ``target`` of N points, the encoder's ``proposal``
    q(z | x), the Pyro ``model`` and the points ``x`` (NUTS and BDMC rebuild targets from them), and
    ``on_warmup`` for Appendix D's chains (called once warm-up has fixed the leapfrog counts)."""

    target: LatentTarget
    proposal: torch.distributions.Distribution
    model: Any
    x: torch.Tensor
    on_warmup: Callable[[Any], None] | None = None


Results = tuple[dict[str, LoglikResult], HMCResult | None]


class Estimator(NamedTuple):
    """One estimator: the ``methods`` (``--method`` names) that ask for it, ``run`` and ``cost``."""

    name: str
    methods: tuple[str, ...]
    run: Callable[[Inputs, EstimatorSettings], Results]
    cost: Callable[[EstimatorSettings, int, int], tuple[float, float]]


#: the registered estimators, in the order `probgen loglik` runs them (their random draws follow it)
ESTIMATORS: dict[str, Estimator] = {}


def register(estimator: Estimator) -> Estimator:
    """Add ``estimator`` to :data:`ESTIMATORS` (after those registered before it)."""
    ESTIMATORS[estimator.name] = estimator
    return estimator


def estimators_for(methods: tuple[str, ...]) -> list[Estimator]:
    """The registered estimators that ``methods`` ask for, in run order."""
    return [e for e in ESTIMATORS.values() if set(e.methods) & set(methods)]


# --- ELBO and IWAE: the same k encoder draws ---------------------------------------------------------


def _run_iwae(inp: Inputs, s: EstimatorSettings) -> Results:
    elbo, iwae = elbo_iwae(inp.target, inp.proposal, s.iwae.samples, s.iwae.max_batch, progress=s.progress)
    return {"elbo": elbo, "iwae": iwae}, None


def _cost_iwae(s: EstimatorSettings, n: int, latent_dim: int) -> tuple[float, float]:
    return 0.0, float(n * s.iwae.samples)


# --- Appendix D: posterior chains from overdispersed starts, then q fitted and importance-weighted ----


def _chains(inp: Inputs, s: EstimatorSettings, z0: torch.Tensor) -> HMCResult:
    h, n_draws = s.hmc, 2 * s.hmc.samples
    if h.sampler == "nuts":
        fns = [from_pyro_model(inp.model, inp.x[i : i + 1]).potential() for i in range(inp.x.shape[0])]
        return run_nuts(fns, z0, h.warmup, n_draws, target_accept_prob=h.target_accept, progress=s.progress)
    return run_hmc(
        from_pyro_model(inp.model, inp.x).potential(),
        z0,
        h.warmup,
        n_draws,
        num_steps=h.leapfrog_steps,
        trajectory_length=h.trajectory_length or None,
        target_accept_prob=h.target_accept,
        adapt_mass_matrix=h.adapt_mass,
        progress=s.progress,
        on_warmup=inp.on_warmup,
    )


def _run_appendix_d(inp: Inputs, s: EstimatorSettings) -> Results:
    # overdispersed starts: half the chains from the encoder, half from prior draws annealed to the
    # posterior, so that chains can land in modes the encoder does not know about
    z0 = overdispersed_init(inp.target, inp.proposal, s.hmc.chains)
    run = _chains(inp, s, z0)
    h = s.hmc
    result = appendix_d_from_samples(
        inp.target, run, h.samples, h.shrink, rhat_max=h.rhat_max, min_ess_per_chain=h.min_ess_per_chain,
        sampler=h.sampler, leapfrog_steps=run.num_steps or None,  # NUTS chooses its own
    )  # fmt: skip
    return {"appendix-d": result}, run


def _cost_appendix_d(s: EstimatorSettings, n: int, latent_dim: int) -> tuple[float, float]:
    h = s.hmc
    transitions = h.warmup + 2 * h.samples
    grads = transitions * (NUTS_GRADS if h.sampler == "nuts" else h.leapfrog_steps + 1)
    starts = (h.chains - round(h.chains / 2)) * OVERDISPERSED_GRADS
    return float(n * (h.chains * grads + starts)), 0.0


# --- AIS from the prior; ais-laplace from each basin's Laplace fit; BDMC on simulated data -----------


def _ais_grads(s: EstimatorSettings) -> int:
    """Gradient evaluations per chain and point of one AIS run."""
    return s.ais.steps * (s.ais.leapfrog_steps + 1)


def encoder_variance(proposal: torch.distributions.Distribution) -> torch.Tensor:
    """The variance (N, D) of the encoder's diagonal Gaussian q(z | x) (for ``--ais-mass encoder``)."""
    base = getattr(proposal, "base_dist", proposal)
    if not hasattr(base, "scale"):
        raise UserError(f"--ais-mass encoder: the encoder's q is a {type(base).__name__}, not a diagonal Gaussian")
    return base.scale.detach().square().expand(proposal.batch_shape + proposal.event_shape)


def _run_ais(inp: Inputs, s: EstimatorSettings) -> Results:
    a = s.ais
    variance = encoder_variance(inp.proposal) if a.mass == "encoder" else None
    result = ais(
        inp.target, a.chains, a.steps, a.leapfrog_steps, progress=s.progress, posterior_variance=variance,
        target_se=a.target_se, max_chains=a.max_chains,
    )  # fmt: skip
    return {"ais": result}, None


def _cost_ais(s: EstimatorSettings, n: int, latent_dim: int) -> tuple[float, float]:
    return float(n * (s.ais.chains + s.ais.pilot) * _ais_grads(s)), 0.0


def laplace_start_points(inp: Inputs) -> torch.Tensor:
    """ais-laplace's optimiser starts (R, N, D): the encoder's mean, encoder draws, prior draws."""
    encoder_draws, prior_draws = laplace_starts(inp.target.latent_dim)
    parts = [
        inp.proposal.mean.unsqueeze(0),
        inp.proposal.sample((encoder_draws,)),
        inp.target.sample_prior(prior_draws),
    ]
    return torch.cat(parts)


def _run_ais_laplace(inp: Inputs, s: EstimatorSettings) -> Results:
    a = s.ais
    result = ais_laplace(
        inp.target, laplace_start_points(inp), a.chains, a.steps, a.leapfrog_steps, laplace_steps=s.laplace.fit_steps,
        progress=s.progress, target_se=a.target_se, max_chains=a.max_chains,
    )  # fmt: skip
    return {"ais-laplace": result}, None


def _cost_ais_laplace(s: EstimatorSettings, n: int, latent_dim: int) -> tuple[float, float]:
    starts = 1 + sum(laplace_starts(latent_dim))
    # Adam steps, a Hessian (D double-backward passes, 2 gradients each) per start and per Newton try
    fit = starts * (s.laplace.fit_steps + 2 * latent_dim) + LAPLACE_HESSIANS * 2 * latent_dim
    grads = n * ((s.ais.chains + s.ais.pilot) * _ais_grads(s) + fit)
    return float(grads), float(n * starts * SEGMENT_POINTS)  # the basin check's forward passes


def _run_bdmc(inp: Inputs, s: EstimatorSettings) -> Results:
    # on as many points simulated from the model: z* ~ p(z), x ~ p(x | z*) (x sets the number and shape)
    z_star, x_sim = simulate(inp.model, inp.x)
    a = s.ais
    both = bdmc(from_pyro_model(inp.model, x_sim), z_star, a.chains, a.steps, a.leapfrog_steps, progress=s.progress)
    return both.results(), None


def _cost_bdmc(s: EstimatorSettings, n: int, latent_dim: int) -> tuple[float, float]:
    return float(n * (2 * s.ais.chains + s.ais.pilot) * _ais_grads(s)), 0.0


register(Estimator("elbo+iwae", ("elbo", "iwae"), _run_iwae, _cost_iwae))
register(Estimator("appendix-d", ("appendix-d",), _run_appendix_d, _cost_appendix_d))
register(Estimator("ais", ("ais",), _run_ais, _cost_ais))
register(Estimator("ais-laplace", ("ais-laplace",), _run_ais_laplace, _cost_ais_laplace))
register(Estimator("bdmc", ("bdmc",), _run_bdmc, _cost_bdmc))
