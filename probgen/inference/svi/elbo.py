"""Trace_ELBO and TraceMeanField_ELBO that also report their terms, with no host sync per step.

Pyro's ``differentiable_loss`` calls ``.item()`` on every site (a GPU sync per step) and returns
only the total. These subclasses reuse Pyro's tracing (``_get_traces``: same scale and plate
handling) but sum the terms as tensors and keep, detached, the unscaled reconstruction and KL:

    recon = sum_n log p(x_n | z_n)          (observed sites, unscaled)
    kl    = sum_n log q(z_n|x_n) - log p(z_n)   (Trace_ELBO: one-sample estimate)
          = sum_n KL(q(z_n|x_n) || p(z_n))      (TraceMeanField_ELBO: analytic)

``last_terms`` holds them (tensors on the data's device) after each call. Guides must be fully
reparameterised (a Normal guide is); anything else falls back to Pyro's own implementation.
"""

from __future__ import annotations

import torch
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence


class _TermsMixin:
    num_particles: int
    last_terms: dict[str, torch.Tensor]

    def differentiable_loss(self, model, guide, *args, **kwargs):  # noqa: ANN001 - Pyro's signature
        loss = 0.0
        recon = 0.0
        kl = 0.0
        extras: dict[str, torch.Tensor] = {}
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):  # type: ignore[attr-defined]
            elbo, r, k = self._particle(model_trace, guide_trace)
            if elbo is None:  # not reparameterised: Pyro's score-function path
                return super().differentiable_loss(model, guide, *args, **kwargs)  # type: ignore[misc]
            particle, terms = self.particle_loss(model_trace, guide_trace, elbo, r, k)
            loss = loss + particle / self.num_particles
            recon = recon + r / self.num_particles
            kl = kl + k / self.num_particles
            for name, v in terms.items():
                extras[name] = extras.get(name, 0.0) + v.detach() / self.num_particles
        self.last_terms = {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach(), **extras}
        return loss

    def particle_loss(self, model_trace, guide_trace, elbo, recon, kl):  # noqa: ANN001, ANN201
        """One particle's loss and extra terms: -ELBO and none; objectives (inference/objectives.py) override it."""
        return -elbo, {}

    def _particle(self, model_trace, guide_trace):  # noqa: ANN001
        raise NotImplementedError


class TermsTrace_ELBO(_TermsMixin, Trace_ELBO):
    """``Trace_ELBO`` recording (recon, KL) and returning the loss tensor without ``.item()``."""

    def _particle(self, model_trace, guide_trace):  # noqa: ANN001
        elbo = 0.0
        recon = 0.0
        kl = 0.0
        for site in model_trace.nodes.values():
            if site["type"] != "sample":
                continue
            elbo = elbo + site["log_prob_sum"]
            if site["is_observed"]:
                recon = recon + site["unscaled_log_prob"].sum()
            else:
                kl = kl - site["unscaled_log_prob"].sum()
        for site in guide_trace.nodes.values():
            if site["type"] != "sample":
                continue
            if not site["fn"].has_rsample:
                return None, None, None
            elbo = elbo - site["log_prob_sum"]
            kl = kl + site["unscaled_log_prob"].sum()
        return elbo, recon, kl


class TermsTraceMeanField_ELBO(_TermsMixin, TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` (analytic KL, scaled by the guide site's scale) recording its terms."""

    def _particle(self, model_trace, guide_trace):  # noqa: ANN001
        elbo = 0.0
        recon = 0.0
        kl = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample":
                continue
            if site["is_observed"]:
                elbo = elbo + site["log_prob_sum"]
                recon = recon + site["unscaled_log_prob"].sum()
                continue
            guide_site = guide_trace.nodes[name]
            kl_qp = kl_divergence(guide_site["fn"], site["fn"])
            elbo = elbo - scale_and_mask(kl_qp, scale=guide_site["scale"], mask=guide_site["mask"]).sum()
            kl = kl + kl_qp.sum()
        return elbo, recon, kl


def make_elbo(name: str, num_particles: int = 1) -> Trace_ELBO:
    """``trace`` -> :class:`TermsTrace_ELBO`; ``tracemeanfield`` -> :class:`TermsTraceMeanField_ELBO`."""
    cls = {"trace": TermsTrace_ELBO, "tracemeanfield": TermsTraceMeanField_ELBO}[name]
    return cls(num_particles=num_particles, vectorize_particles=False)
