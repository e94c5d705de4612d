"""`probgen loglik` and `probgen diagnose`: estimators, HMC/AIS settings and chain checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from probgen.config.base import _help, check, check_device, choice, data_root_field, device_field, progress_field
from probgen.config.estimators import AISSettings, HMCSettings, IWAESettings
from probgen.errors import UserError


@dataclass
class ChainCheckConfig:
    """Thresholds that decide whether HMC chains mixed (Vehtari et al. 2021)."""

    rhat_max: float = _help(
        "a data point fails if any latent's rank-normalised R-hat exceeds this", default=HMCSettings.rhat_max
    )
    min_ess_per_chain: float = _help(
        "a data point fails if any latent's bulk or tail ESS is below this x chains",
        default=HMCSettings.min_ess_per_chain,
    )

    def __post_init__(self) -> None:
        check(self.rhat_max >= 1.0, "rhat_max", f"must be >= 1, got {self.rhat_max}")
        check(self.min_ess_per_chain >= 0, "min_ess_per_chain", f"must be >= 0, got {self.min_ess_per_chain}")


#: the estimators of `probgen loglik`, in report order
LOGLIK_METHODS = ("elbo", "iwae", "appendix-d", "ais", "ais-laplace")
#: what ``--method all`` runs (ais-laplace is asked for by name: it repeats AIS's work from another start)
ALL_METHODS = ("elbo", "iwae", "appendix-d", "ais")
#: the results of ``--method bdmc`` (on points simulated from the model; not part of "all")
BDMC_METHODS = ("bdmc-lower", "bdmc-upper")

#: ``--budget``: the sampling settings it fills in (those not given), per device type. Every budget
#: runs at least 8 chains: the AIS family's se and ``ais-variance`` flag are read off the chains'
#: weights, and with 4 the flag let a log-weight variance of 2 pass a third of the time (issue 21).
#: CPU quick's 200 temperatures (300 at 4 chains before) keep ais-laplace on the README's model near
#: its former ~5 min (docs/benchmarks.md); thorough meets issue 12's "done" on the latent-2
#: validation models (docs/loglik.md).
BUDGETS: dict[str, dict[str, dict[str, int]]] = {
    "cpu": {
        "quick": {
            "chains": 8,
            "warmup": 200,
            "samples": 300,
            "ais_steps": 200,
            "leapfrog_steps": 5,
            "iwae_samples": 1000,
        },
        "standard": {
            "chains": 8,
            "warmup": 300,
            "samples": 600,
            "ais_steps": 1000,
            "leapfrog_steps": 10,
            "iwae_samples": 5000,
        },
        "thorough": {
            "chains": 16,
            "warmup": 500,
            "samples": 1000,
            "ais_steps": 3000,
            "leapfrog_steps": 10,
            "iwae_samples": 20000,
        },
    },
    "cuda": {
        "quick": {
            "chains": 8,
            "warmup": 300,
            "samples": 500,
            "ais_steps": 1000,
            "leapfrog_steps": 10,
            "iwae_samples": 5000,
        },
        "standard": {
            "chains": 16,
            "warmup": 500,
            "samples": 1000,
            "ais_steps": 3000,
            "leapfrog_steps": 10,
            "iwae_samples": 20000,
        },
        "thorough": {
            "chains": 32,
            "warmup": 1000,
            "samples": 2000,
            "ais_steps": 10000,
            "leapfrog_steps": 10,
            "iwae_samples": 100000,
        },
    },
}
#: ``--points``: which --num-data points of the split are evaluated
POINTS = ("random", "first")
#: the seed of ``--points random`` (fixed: every run, whatever its --seed, scores the same points)
POINTS_SEED = 20130120
BUDGET_FIELDS = ("chains", "warmup", "samples", "ais_steps", "leapfrog_steps", "iwae_samples")
#: the explicit run's defaults (when --method, --num-data, --budget or a budget flag is given)
DEFAULT_NUM_DATA, DEFAULT_BUDGET = 100, "standard"

#: the default run (no --method, --num-data, --budget or budget flag): its time budget in minutes
#: (--time), the estimators it runs on the deeply scored points (cross-checked against each other
#: and against IWAE) and the budget they run at
DEFAULT_MINUTES = 8.0
DEEP_METHODS = ("appendix-d", "ais-laplace")
DEEP_BUDGET = "quick"
#: the default run's cheap phase: IWAE samples per point, per device type
CHEAP_IWAE_SAMPLES = {"cpu": 100, "cuda": 1000}


#: the `probgen loglik --help` groups: the sampling budget, then each estimator family's settings
BUDGET_GROUP = "budget (the default run: --time; an explicit run: --budget fills in the settings left unset)"
HMC_GROUP = "hmc (appendix-d's posterior chains)"
AIS_GROUP = "ais (ais, ais-laplace, bdmc)"
IWAE_GROUP = "iwae (elbo, iwae)"


@dataclass
class LoglikConfig:
    """Everything `probgen loglik` needs: which checkpoint and data, which estimators, how long to sample."""

    ckpt: str = _help("VAE checkpoint file (or its run directory)", default="", required=True)
    split: str = _help("dataset split to evaluate", default="test")
    num_data: int | None = _help(
        "evaluate N data points of the split (all of them if fewer); --points says which (default: 100 when --method "
        "or a budget flag is given; else the default run chooses, see --time)",
        default=None,
    )
    points: str = _help(
        "which --num-data points: random (a fixed random subset of the split, the same for every --seed, in split "
        "order) or first (the first N: in dSprites' factor order these are all small squares)",
        default="random",
    )
    method: str = _help(
        "estimators, comma-separated: elbo, iwae, appendix-d, ais, or all (these four); ais-laplace: AIS from a "
        "Laplace fit of each posterior (--ais-steps and --chains as ais; far lower variance for the same work); "
        "bdmc: forward and reverse AIS bounds on --num-data points simulated from the model (default: the default "
        "run, see --time; all when --num-data or a budget flag is given)",
        default=None,
    )
    sampler: str = _help(
        "posterior sampler for appendix-d: hmc (batched) or nuts (stock Pyro, per point; slow)",
        default=HMCSettings.sampler,
        group=HMC_GROUP,
    )
    budget: str = _help(
        "quick, standard or thorough: chooses --chains, --warmup, --samples, --ais-steps and -k for the device "
        "(CPU or GPU; docs/loglik.md lists them); a flag given explicitly wins (default: standard; the default run "
        "chooses its own, see --time)",
        default=None,
        group=BUDGET_GROUP,
    )
    time: float | None = _help(
        "minutes the default run may take (no --method, --num-data, --budget or budget flag): the split's mean log "
        "p(x) with a 95-percent interval, from IWAE on many random points and the trusted estimators on a random "
        f"subset of them, sized from this device's measured speed (docs/loglik.md) (default: {DEFAULT_MINUTES:g})",
        default=None,
        group=BUDGET_GROUP,
    )
    chains: int | None = _help(
        "HMC chains per data point, also the number of AIS chains (default: from --budget)",
        default=None,
        group=BUDGET_GROUP,
    )
    warmup: int | None = _help(
        "HMC warm-up (adaptation) transitions per chain (default: from --budget)", default=None, group=HMC_GROUP
    )
    samples: int | None = _help(
        "HMC draws per chain in each Appendix D stage (fit, then estimate) (default: from --budget)",
        default=None,
        group=HMC_GROUP,
    )
    trajectory_length: float = _help(
        "HMC trajectory length in units of the adapted posterior scale (leapfrog steps = this / median step size); "
        "0: use --leapfrog-steps",
        default=HMCSettings.trajectory_length,
        group=HMC_GROUP,
    )
    leapfrog_steps: int | None = _help(
        "leapfrog steps per AIS temperature (and per HMC transition if --trajectory-length 0) (default: from --budget)",
        default=None,
        group=AIS_GROUP,
    )
    target_accept: float = _help(
        "target acceptance of the HMC step-size adaptation", default=HMCSettings.target_accept, group=HMC_GROUP
    )
    adapt_mass: bool = _help(
        "adapt a diagonal mass per data point during warm-up", default=HMCSettings.adapt_mass, group=HMC_GROUP
    )
    shrink: float = _help(
        "Appendix D: the fitted Gaussian's covariance is scaled by this (< 1: lighter tails)",
        default=HMCSettings.shrink,
        group=HMC_GROUP,
    )
    discretise: bool = _help(
        "Gaussian likelihoods: score the 8-bit images under the discretised Gaussian (256 bins; a probability, "
        "bits/dim comparable with the literature); --no-discretise: the continuous density",
        default=True,
    )
    iwae_samples: int | None = _help(
        "importance samples per data point for IWAE and the ELBO (default: from --budget)",
        default=None,
        short="-k",
        group=IWAE_GROUP,
    )
    max_batch: int = _help(
        "at most this many decoder evaluations per batch when scoring IWAE samples",
        default=IWAESettings.max_batch,
        group=IWAE_GROUP,
    )
    ais_steps: int | None = _help(
        "AIS temperatures, one HMC transition each (default: from --budget)", default=None, group=AIS_GROUP
    )
    ais_mass: str = _help(
        "AIS mass matrix: unit (identity) or encoder (diagonal, from the encoder's variance, tempered: the "
        "prior's scale at beta 0, the encoder's at beta 1)",
        default=AISSettings.mass,
        group=AIS_GROUP,
    )
    target_se: float = _help(
        "AIS adaptive stop: points whose standard error is above this many nats get --chains more AIS chains, "
        "round after round, until it is at most this or they have --max-chains; 0: off",
        default=0.0,
        group=AIS_GROUP,
    )
    max_chains: int = _help(
        "AIS adaptive stop: at most this many chains per point (0: 8 x --chains)", default=0, group=AIS_GROUP
    )
    points_per_batch: int = _help(
        "data points sampled together (all chains of a batch share each decoder call)", default=128
    )
    plot_points: tuple[int, ...] = _help(
        "data points (indices into the split, the datapoint column of loglik.csv) that get trace and rank PNGs "
        "(default: the 2 with the worst R-hat)",
        default=(),
    )
    data_root: str | None = data_root_field()
    seed: int = _help("random seed", default=0)
    device: str = device_field()
    out: str | None = _help("output directory (default: <checkpoint's folder>/loglik)", default=None)
    overwrite: bool = _help("replace the results in an existing --out", default=False)
    progress: bool = progress_field()
    json: bool = _help("print loglik.json to stdout instead of the table", default=False)
    checks: ChainCheckConfig = field(default_factory=ChainCheckConfig)

    def __post_init__(self) -> None:
        check(self.num_data is None or self.num_data >= 1, "num_data", f"must be >= 1, got {self.num_data}")
        if isinstance(self.method, (list, tuple)):  # a list in a config file
            self.method = ",".join(self.method)
        for m in ("all" if self.method is None else self.method).replace(" ", "").split(","):
            choice(m, "method", (*LOGLIK_METHODS, "all", "bdmc"))
        check(self.time is None or self.time > 0, "time", f"must be > 0 minutes, got {self.time}")
        if self.time is not None and self.explicit_flags:
            raise UserError(
                f"--time sizes the default run; it cannot be combined with {', '.join(self.explicit_flags)}, which "
                "run exactly what they say"
            )
        choice(self.sampler, "sampler", ("hmc", "nuts"))
        choice(self.points, "points", POINTS)
        choice(self.ais_mass, "ais_mass", ("unit", "encoder"))
        check(self.budget is None or self.budget in BUDGETS["cpu"], "budget",
               f"invalid choice {self.budget!r} (choose from {', '.join(BUDGETS['cpu'])})")  # fmt: skip
        check(self.chains is None or self.chains >= 1, "chains", f"must be >= 1, got {self.chains}")
        check(self.warmup is None or self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup}")
        check(self.samples is None or self.samples >= 2, "samples", f"must be >= 2, got {self.samples}")
        lf = self.leapfrog_steps
        check(lf is None or lf >= 1, "leapfrog_steps", f"must be >= 1, got {lf}")
        check(self.trajectory_length >= 0, "trajectory_length", f"must be >= 0, got {self.trajectory_length}")
        check(0 < self.target_accept < 1, "target_accept", f"must be in (0, 1), got {self.target_accept}")
        check(0 < self.shrink <= 1, "shrink", f"must be in (0, 1], got {self.shrink}")
        k = self.iwae_samples
        check(k is None or k >= 1, "iwae_samples", f"must be >= 1, got {k}")
        check(self.max_batch >= 1, "max_batch", f"must be >= 1, got {self.max_batch}")
        check(self.ais_steps is None or self.ais_steps >= 2, "ais_steps", f"must be >= 2, got {self.ais_steps}")
        check(self.target_se >= 0, "target_se", f"must be >= 0 (0: off), got {self.target_se}")
        check(self.max_chains >= 0, "max_chains", f"must be >= 0 (0: 8 x --chains), got {self.max_chains}")
        check(
            not self.max_chains or self.chains is None or self.max_chains >= self.chains,
            "max_chains",
            f"must be at least --chains ({self.chains}), got {self.max_chains}",
        )
        check(self.points_per_batch >= 1, "points_per_batch", f"must be >= 1, got {self.points_per_batch}")
        check(all(i >= 0 for i in self.plot_points), "plot_points", f"must be >= 0: {self.plot_points}")
        check_device(self.device)

    @property
    def explicit_flags(self) -> tuple[str, ...]:
        """The flags given that ask for today's explicit run (--method, --num-data, --budget, budget flags)."""
        names = ("method", "num_data", "budget", *BUDGET_FIELDS)
        return tuple("--" + k.replace("_", "-") for k in names if getattr(self, k) is not None)

    @property
    def split_mean(self) -> bool:
        """Whether this is the default run: the split's mean log p(x) with a 95% interval, sized to --time."""
        return not self.explicit_flags

    def resolved(self, device_type: str) -> LoglikConfig:
        """This config with the settings left unset filled in from ``--budget`` for ``device_type``
        (``cuda`` or anything else: the CPU table), and ``--method all``, ``--num-data 100`` and
        ``--budget standard`` where unset (the explicit run's defaults)."""
        budget = self.budget or DEFAULT_BUDGET
        table = BUDGETS["cuda" if device_type == "cuda" else "cpu"][budget]
        filled = {k: v for k, v in table.items() if getattr(self, k) is None}
        return dataclasses.replace(
            self,
            method="all" if self.method is None else self.method,
            num_data=DEFAULT_NUM_DATA if self.num_data is None else self.num_data,
            budget=budget,
            **filled,
        )

    @property
    def minutes(self) -> float:
        """The default run's time budget in minutes (``--time``, else :data:`DEFAULT_MINUTES`)."""
        return self.time or DEFAULT_MINUTES

    @property
    def methods(self) -> tuple[str, ...]:
        """The estimators to run, in report order (each once)."""
        asked = set(("all" if self.method is None else self.method).replace(" ", "").split(","))
        if "all" in asked:
            asked |= set(ALL_METHODS)
        return tuple(m for m in (*LOGLIK_METHODS, "bdmc") if m in asked)


@dataclass
class DiagnoseConfig:
    """`probgen diagnose`: R-hat/ESS of the chains in a chains.nc."""

    chains_file: str = _help("chains.nc written by `probgen loglik` (or its folder)", default="", positional=True)
    json: bool = _help("print the per-point diagnostics as JSON instead of the ArviZ summary", default=False)
    checks: ChainCheckConfig = field(default_factory=ChainCheckConfig)
