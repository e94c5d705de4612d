"""probgen.inference: SVI objectives and annealing, the batched HMC kernel, log-likelihood
estimators (ELBO, IWAE, Kingma & Welling App. D, AIS from the prior or a Laplace fit, BDMC),
per-point trust checks and the ArviZ bridge.

Inference receives callables (a Pyro model and guide, a log-joint), never a concrete model class.
Subpackages by concern: ``svi`` (ELBOs, objectives, schedules, the SVI step), ``mcmc`` (the batched
HMC kernel, starts, modes, ArviZ diagnostics), ``loglik`` (one module per estimator, trust, results)
and ``testing`` (models with exact log p(x) for tests and benchmarks). Names load lazily, and each
public name is the function or class itself: ``from probgen.inference import ais`` gives the estimator.
"""

from probgen.utils.lazy import lazy_exports

_EXPORTS = {
    # SVI: objectives and schedules
    "make_elbo": "svi.elbo",
    "TermsTrace_ELBO": "svi.elbo",
    "TermsTraceMeanField_ELBO": "svi.elbo",
    "IWAE": "svi.objectives",
    "tc_decomposition": "svi.objectives",
    "dip_penalty": "svi.objectives",
    "capacity_at": "svi.objectives",
    "svi_step": "svi.step",
    "beta_at": "svi.schedules",
    # posterior sampling
    "LatentTarget": "mcmc.potential",
    "from_pyro_model": "mcmc.potential",
    "encoder_proposal": "mcmc.potential",
    "BatchedHMC": "mcmc.hmc",
    "HMCResult": "mcmc.hmc",
    "run_hmc": "mcmc.hmc",
    "HMCState": "mcmc.transition",
    "init_state": "mcmc.transition",
    "hmc_transition": "mcmc.transition",
    "find_reasonable_step_size": "mcmc.transition",
    "run_nuts": "mcmc.reference",
    # log-likelihood estimators and their trust
    "LoglikResult": "loglik.result",
    "FLAG_REASONS": "loglik.result",
    "elbo_iwae": "loglik.iwae",
    "ordering_warnings": "loglik.iwae",
    "appendix_d": "loglik.appendix_d",
    "appendix_d_from_samples": "loglik.appendix_d",
    "fit_gaussian": "loglik.appendix_d",
    "ais": "loglik.ais",
    "anneal": "loglik.ais",
    "sigmoid_schedule": "loglik.ais",
    "ais_schedule": "loglik.ais",
    "ais_laplace": "loglik.laplace",
    "laplace_fit": "loglik.laplace_fit",
    "bdmc": "loglik.bdmc",
    "BDMCResult": "loglik.bdmc",
    "simulate": "loglik.bdmc",
    "bdmc_gap_table": "loglik.bdmc",
    "bdmc_laplace": "loglik.bdmc",
    "grid_log_px": "loglik.quadrature",
    "chain_checks": "loglik.appendix_d",
    "cross_check": "loglik.trust",
    "disagreement_threshold": "loglik.trust",
    "pareto_khat": "loglik.weights",
    "log_mean_se": "loglik.weights",
    # chain diagnostics (ArviZ)
    "ChainDiagnostics": "mcmc.diagnostics",
    "diagnose": "mcmc.diagnostics",
    "to_inference_data": "mcmc.diagnostics",
    "save_chains": "mcmc.diagnostics",
    "load_chains": "mcmc.diagnostics",
    "plot_chains": "mcmc.diagnostics",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
