"""The estimators' one interface (probgen/inference/loglik/estimators.py): every method has one entry, each
entry's run is its estimator called with the settings, and each cost counts what the run evaluates."""

from __future__ import annotations

import dataclasses

import pyro
import pytest
import torch

from probgen.config.estimators import AISSettings, EstimatorSettings, IWAESettings, pilot_chains
from probgen.config.loglik import LOGLIK_METHODS
from probgen.inference.loglik.ais import ais
from probgen.inference.loglik.estimators import ESTIMATORS, Inputs, estimators_for
from probgen.inference.loglik.iwae import elbo_iwae
from probgen.inference.mcmc.potential import encoder_proposal, from_pyro_model
from probgen.inference.testing.ppca import PPCA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_method_has_exactly_one_entry_in_run_order():
    for method in (*LOGLIK_METHODS, "bdmc"):
        assert len(estimators_for((method,))) == 1, method
    registered = {m for e in ESTIMATORS.values() for m in e.methods}
    assert registered == {*LOGLIK_METHODS, "bdmc"}  # --method accepts exactly the registered methods
    assert [e.name for e in estimators_for(("bdmc", "ais", "elbo"))] == ["elbo+iwae", "ais", "bdmc"]


def test_the_pilot_rule_is_a_quarter_of_the_chains_and_at_least_two():
    assert [pilot_chains(c) for c in (1, 4, 8, 11, 16, 64)] == [2, 2, 2, 2, 4, 16]
    assert AISSettings(chains=32).pilot == 8


def _inputs(n: int = 3) -> tuple[Inputs, PPCA]:
    m = PPCA.random(obs_dim=6, latent_dim=2, s=0.3, seed=3)
    x = m.simulate(n)
    return Inputs(from_pyro_model(m.model, x), encoder_proposal(m.guide, x), m.model, x), m


def test_runs_are_the_estimators_called_with_the_settings():
    inp, _ = _inputs()
    s = EstimatorSettings(ais=AISSettings(chains=4, steps=10, leapfrog_steps=2), iwae=IWAESettings(samples=20))
    pyro.set_rng_seed(0)
    results, chains = ESTIMATORS["ais"].run(inp, s)
    pyro.set_rng_seed(0)
    direct = ais(inp.target, 4, 10, 2)
    assert chains is None and torch.equal(results["ais"].log_px, direct.log_px)
    pyro.set_rng_seed(0)
    results, _ = ESTIMATORS["elbo+iwae"].run(inp, s)
    pyro.set_rng_seed(0)
    elbo, iwae = elbo_iwae(inp.target, inp.proposal, 20)
    assert torch.equal(results["elbo"].log_px, elbo.log_px) and torch.equal(results["iwae"].log_px, iwae.log_px)


def test_ais_costs_count_the_gradients_the_run_makes():
    inp, _ = _inputs(n=2)
    calls = []
    log_joint = inp.target.log_joint

    def counting(z: torch.Tensor):  # noqa: ANN202
        if z.requires_grad:
            calls.append(z.shape[0])  # chains evaluated together, each a gradient of every point
        return log_joint(z)

    inp = dataclasses.replace(inp, target=dataclasses.replace(inp.target, log_joint=counting))
    s = EstimatorSettings(ais=AISSettings(chains=4, steps=6, leapfrog_steps=2))
    ESTIMATORS["ais"].run(inp, s)
    grads, forwards = ESTIMATORS["ais"].cost(s, 2, 2)
    assert forwards == 0 and grads == pytest.approx(2 * sum(calls), rel=0.2)  # + the step-size search's few
    assert ESTIMATORS["bdmc"].cost(s, 2, 2)[0] == grads * (2 * 4 + 2) / (4 + 2)  # a reverse run on as many chains
    assert ESTIMATORS["elbo+iwae"].cost(EstimatorSettings(iwae=IWAESettings(samples=7)), 5, 2) == (0.0, 35.0)
