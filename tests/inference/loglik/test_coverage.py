"""Coverage of the error bars (issue 21, item 2): many independent estimates of one point of an exact model,
each with its se, from one batched call of `probgen loglik`'s own code path (:func:`estimate_points`: the point
repeated R times, independent draws and chains per repeat).

The claim an error bar makes: at least 90% of |error| < 2 se, and var(estimate) / mean(se^2) in [0.75, 1.33]
(:mod:`probgen.inference.testing.validation`). Where an estimator cannot make that claim it must say so per
point: a cell passes when its error bars cover, or when at least 90% of its repeats are flagged (a failure that
shows in a flag, never one that hides). ``KNOWN`` lists the cells measured to do neither; the slow test fails
if one of them starts to pass (update the list and docs/loglik.md then), as a strict xfail would.
"""

import dataclasses

import pyro
import pytest

from probgen.config import LoglikConfig
from probgen.config.loglik import BUDGETS
from probgen.inference.testing import exact_model
from probgen.inference.testing.validation import coverage, coverage_failures
from probgen.pipelines.loglik import estimate_points

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WITH_SE = ("iwae", "appendix-d", "ais", "ais-laplace")
REPEATS = 200
FLAGGED_ENOUGH = 0.9

#: (model, latent, budget, estimator) -> what was measured (CPU, 200 repeats, seed 0; docs/loglik.md)
KNOWN = {
    ("curved", 2, "quick", "ais"): "96.0% within 2 se, var ratio 0.71 (se too large on average), 8/200 flagged",
    ("mixture", 10, "quick", "ais"): "94.0% within 2 se, var ratio 0.38, 139/200 flagged",
    ("mixture", 10, "quick", "ais-laplace"): "88.5% within 2 se, var ratio 0.53 (a noisy 8-chain se), 0 flagged",
    ("mixture", 10, "standard", "ais"): "90.5% within 2 se, var ratio 0.71, 0 flagged",
    ("mixture", 10, "standard", "ais-laplace"): "91.0% within 2 se, var ratio 0.51, 0 flagged",
}


def _cell(name: str, latent: int, settings: dict, methods=WITH_SE, seed: int = 0) -> dict[str, tuple[dict, float]]:
    """Per estimator: its coverage summary and the fraction of repeats flagged."""
    m = exact_model(name, latent, seed=seed)
    x = m.simulate(1, seed=1).expand(REPEATS, -1).contiguous()
    cfg = LoglikConfig(ckpt="", method=",".join(methods), progress=False)
    cfg = dataclasses.replace(cfg, **settings).resolved("cpu")
    pyro.set_rng_seed(seed)
    res, _ = estimate_points(cfg, m.model, m.guide, x)
    exact = float(m.log_evidence(x[:1])[0])
    return {k: (coverage(r.log_px, r.se, exact), float((~r.trusted).double().mean())) for k, r in res.items()}


def _verdict(name: str, cov: dict, flagged: float) -> list[str]:
    """The cell's failures: its coverage failures, unless the repeats are flagged (then none)."""
    return [] if flagged >= FLAGGED_ENOUGH else coverage_failures(f"{name} ({flagged:.0%} flagged)", cov)


def test_iwae_error_bars_cover_where_its_weights_are_light_tailed_and_are_flagged_where_not():
    """IWAE's delta-method se at the quick budget's k: on a latent-10 mixture whose encoder covers the posterior
    (Pareto k-hat < 0.7) it covers; on a latent-2 point with two basins and one Gaussian encoder (k-hat ~1) it
    does not, and nearly every repeat is flagged heavy-tailed-weights."""
    k = BUDGETS["cpu"]["quick"]["iwae_samples"]
    cov, flagged = _cell("mixture", 10, {"iwae_samples": k}, methods=("iwae",))["iwae"]
    assert flagged < 0.1 and not coverage_failures("iwae, mixture latent 10", cov), (cov, flagged)
    cov, flagged = _cell("curved", 2, {"iwae_samples": k}, methods=("iwae",))["iwae"]
    assert coverage_failures("iwae, curved latent 2", cov) and flagged >= FLAGGED_ENOUGH, (cov, flagged)


@pytest.mark.slow
@pytest.mark.parametrize("budget", ["quick", "standard"])
@pytest.mark.parametrize(("name", "latent"), [("curved", 2), ("mixture", 10)])
def test_error_bars_cover_or_are_flagged_at_the_cpu_budgets(name, latent, budget):
    cells = _cell(name, latent, BUDGETS["cpu"][budget], methods=("ais", "ais-laplace"))
    fails, fixed = [], []
    for method, (cov, flagged) in cells.items():
        failed = _verdict(f"{method}, {name} latent {latent}, {budget}", cov, flagged)
        if (name, latent, budget, method) in KNOWN:
            fixed += [] if failed else [f"{method} now passes: remove it from KNOWN ({cov}, {flagged:.0%} flagged)"]
        else:
            fails += failed
    assert not fails and not fixed, fails + fixed
