"""probgen.inference: SVI objectives and annealing, the batched HMC kernel, log-likelihood
estimators (ELBO, IWAE, Kingma & Welling App. D, AIS from the prior or a Laplace fit, BDMC),
per-point trust checks and the ArviZ bridge.

Inference receives callables (a Pyro model and guide, a log-joint), never a concrete model class.
Names load lazily. ``ais``, ``appendix_d`` and ``bdmc`` are modules whose estimator has the same
name (``probgen.inference.ais.ais``), as with ``torch.fft.fft``.
"""

from probgen.utils.lazy import lazy_exports

_EXPORTS = {
    # SVI: objectives and schedules
    "make_elbo": "elbo",
    "TermsTrace_ELBO": "elbo",
    "TermsTraceMeanField_ELBO": "elbo",
    "IWAE": "objectives",
    "tc_decomposition": "objectives",
    "dip_penalty": "objectives",
    "capacity_at": "objectives",
    "svi_step": "svi",
    "beta_at": "schedules",
    # posterior sampling
    "LatentTarget": "potential",
    "from_pyro_model": "potential",
    "encoder_proposal": "potential",
    "BatchedHMC": "hmc",
    "HMCResult": "hmc",
    "run_hmc": "hmc",
    "HMCState": "transition",
    "init_state": "transition",
    "hmc_transition": "transition",
    "find_reasonable_step_size": "transition",
    "run_nuts": "reference",
    # log-likelihood estimators and their trust
    "LoglikResult": "result",
    "FLAG_REASONS": "result",
    "elbo_iwae": "loglik",
    "ordering_warnings": "loglik",
    "appendix_d": "appendix_d",
    "appendix_d_from_samples": "appendix_d",
    "fit_gaussian": "appendix_d",
    "ais": "ais",
    "anneal": "ais",
    "sigmoid_schedule": "ais",
    "ais_schedule": "ais",
    "ais_laplace": "laplace",
    "laplace_fit": "laplace",
    "bdmc": "bdmc",
    "BDMCResult": "bdmc",
    "simulate": "bdmc",
    "bdmc_gap_table": "bdmc",
    "grid_log_px": "quadrature",
    "chain_checks": "appendix_d",
    "cross_check": "trust",
    "disagreement_threshold": "trust",
    "pareto_khat": "weights",
    "log_mean_se": "weights",
    # chain diagnostics (ArviZ)
    "ChainDiagnostics": "diagnostics",
    "diagnose": "diagnostics",
    "to_inference_data": "diagnostics",
    "save_chains": "diagnostics",
    "load_chains": "diagnostics",
    "plot_chains": "diagnostics",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
