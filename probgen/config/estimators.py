"""The settings of the log-likelihood estimators, grouped by what they configure, with their defaults.

One dataclass per family: :class:`HMCSettings` (Appendix D's posterior chains and their checks),
:class:`AISSettings` (AIS, ais-laplace and BDMC), :class:`IWAESettings` (ELBO and IWAE) and
:class:`LaplaceSettings` (ais-laplace's fit). Their defaults are the estimator functions' defaults
(the functions read them from here), and `probgen loglik`'s config takes the defaults of the flags
that are not filled in by ``--budget`` from them too (probgen.config.loglik); :class:`EstimatorSettings`
carries one of each to the registered estimators (probgen.inference.loglik.estimators).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AISSettings",
    "EstimatorSettings",
    "HMCSettings",
    "IWAESettings",
    "LaplaceSettings",
    "pilot_chains",
]


def pilot_chains(num_chains: int) -> int:
    """Chains of the AIS family's pilot run for ``num_chains`` weighted chains: max(2, C // 4), i.e. a
    quarter of the weighted chains' work at 16 chains (:func:`~probgen.inference.loglik.ais.ais`)."""
    return max(2, num_chains // 4)


@dataclass(frozen=True)
class HMCSettings:
    """Appendix D's posterior chains (chains, warm-up and draws: the standard CPU budget's): ``chains`` per
    point, ``warmup`` adaptation transitions, then
    2 x ``samples`` draws (fit, then estimate); leapfrog steps = ``trajectory_length`` / the adapted
    step size (0: ``leapfrog_steps``); the fitted Gaussian's covariance scaled by ``shrink``; a point
    fails its chain checks above ``rhat_max`` or below ``min_ess_per_chain`` x chains of ESS."""

    chains: int = 8
    warmup: int = 300
    samples: int = 600
    trajectory_length: float = 2.5
    leapfrog_steps: int = 10
    target_accept: float = 0.8
    adapt_mass: bool = True
    sampler: str = "hmc"
    shrink: float = 0.8
    rhat_max: float = 1.01
    min_ess_per_chain: float = 100.0


@dataclass(frozen=True)
class AISSettings:
    """AIS with HMC transitions: ``chains`` weighted chains per point (plus :attr:`pilot` pilot chains),
    ``steps`` temperatures of one ``leapfrog_steps``-step transition each, step sizes adapted towards
    ``target_accept``; ``mass`` unit or encoder; the adaptive stop adds chains to points whose se is
    above ``target_se`` nats, up to ``max_chains`` (None: off / 8 x chains)."""

    chains: int = 16
    steps: int = 1000
    leapfrog_steps: int = 10
    target_accept: float = 0.65
    mass: str = "unit"
    target_se: float | None = None
    max_chains: int | None = None

    @property
    def pilot(self) -> int:
        """The pilot run's chains (:func:`pilot_chains`)."""
        return pilot_chains(self.chains)


#: ais-laplace's own defaults: its annealing starts at the Laplace fit, so it needs fewer temperatures
LAPLACE_AIS = AISSettings(steps=300, leapfrog_steps=5)


@dataclass(frozen=True)
class IWAESettings:
    """ELBO and IWAE: ``samples`` draws of the encoder per point, scored ``max_batch`` decoder
    evaluations at a time."""

    samples: int = 5000
    max_batch: int = 4096


@dataclass(frozen=True)
class LaplaceSettings:
    """ais-laplace's fit: ``fit_steps`` Adam steps from each start, learning rate decaying from ``lr``."""

    fit_steps: int = 200
    lr: float = 0.2


@dataclass(frozen=True)
class EstimatorSettings:
    """One of each family's settings, and whether to show progress bars."""

    hmc: HMCSettings = field(default_factory=HMCSettings)
    ais: AISSettings = field(default_factory=AISSettings)
    iwae: IWAESettings = field(default_factory=IWAESettings)
    laplace: LaplaceSettings = field(default_factory=LaplaceSettings)
    progress: bool = False
