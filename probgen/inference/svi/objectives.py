"""VAE objectives beyond the ELBO, as ELBO subclasses over any model/guide with a Normal latent site.

Each objective reuses probgen's term-reporting ELBOs (:mod:`probgen.inference.svi.elbo`: Pyro's tracing,
scales and plates) and changes only the loss of a particle, through ``particle_loss``. All terms
are batch sums in nats (the trainer divides by the number of images); ``last_terms`` holds, besides
loss / recon / kl, the objective's own terms under the names in ``term_names``.

- :class:`BetaTCVAE` (Chen et al. 2018): -ELBO + (beta_tc - 1) TC, the total correlation by
  minibatch-weighted sampling; with the one-sample KL, KL = index-code MI + TC + dimension-wise KL
  exactly, so this is Chen et al.'s objective with alpha = gamma = 1.
- :class:`FactorVAE` (Kim & Mnih 2018): -ELBO + gamma TC, TC from a discriminator's density ratio
  log D(z) / (1 - D(z)) between q(z) and the product of its marginals (codes permuted per dimension);
  :func:`discriminator_loss` trains the discriminator with its own optimiser.
- :class:`DIPVAE2` (Kumar et al. 2018): -ELBO + lambda_od sum_{i!=j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2,
  C = Cov_q(z) = E[Cov_q(z|x)] + Cov[E_q(z|x)] over the batch (per image, times the batch size).
- :class:`CapacityVAE` (Burgess et al. 2018): -recon + gamma |KL - C| (per image, times the batch size),
  C = :func:`capacity_at` the optimiser step, linear from 0 to C_max.
- :class:`IWAE` (Burda et al. 2016): Pyro's :class:`~pyro.infer.RenyiELBO` at alpha = 0 with K
  vectorised particles, reporting its terms like the others.

The classes take callables (a discriminator) and a site name, never a concrete model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.infer import RenyiELBO
from pyro.infer.util import get_dependent_plate_dims, torch_sum

from probgen.inference.svi.elbo import TermsTrace_ELBO, TermsTraceMeanField_ELBO

_LOG_2PI = math.log(2 * math.pi)


# --- pure estimators ------------------------------------------------------------------------------


def _normal_log_density(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return -0.5 * (((z - loc) / scale) ** 2 + _LOG_2PI) - scale.log()


def tc_decomposition(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """KL decomposition of Chen et al. (2018) by minibatch-weighted sampling, per data point.

    z, loc, scale: (M, D): a draw z_i ~ q(z | x_i) and the parameters of each q(z | x_j) of the batch.
    The aggregate posterior and its marginals are estimated from the batch,
    q(z_i) ~= 1/M sum_j q(z_i | x_j) and q(z_id) ~= 1/M sum_j q(z_id | x_jd). Returns tensors (M,):

        mi     = log q(z_i | x_i) - log q(z_i)              (index-code mutual information)
        tc     = log q(z_i) - sum_d log q(z_id)             (total correlation)
        dim_kl = sum_d log q(z_id) - log p(z_id)            (dimension-wise KL, p = N(0, 1))

    which add up to log q(z_i | x_i) - log p(z_i), the one-sample KL. Chen et al. write the
    normaliser as 1/(NM) (N the dataset size); that shifts the TC by the constant (D - 1) log N and
    leaves its gradients unchanged. 1/M makes the TC itself consistent: it converges to
    KL(q(z) || prod_d q(z_d)) as M grows (the closed form on Gaussians, tested).
    """
    m = z.shape[0]
    log_m = math.log(m)
    pair = _normal_log_density(z[:, None, :], loc[None, :, :], scale[None, :, :])  # (M, M, D): i, j, d
    log_qz_x = pair.diagonal(dim1=0, dim2=1).sum(0)  # (M,) log q(z_i | x_i)
    log_qz = torch.logsumexp(pair.sum(-1), dim=1) - log_m  # (M,)
    log_qz_prod = (torch.logsumexp(pair, dim=1) - log_m).sum(-1)  # (M,)
    log_pz = _normal_log_density(z, torch.zeros_like(z), torch.ones_like(z)).sum(-1)  # (M,)
    return {"mi": log_qz_x - log_qz, "tc": log_qz - log_qz_prod, "dim_kl": log_qz_prod - log_pz}


def aggregate_covariance(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Cov_q(z) = E_x[Cov_q(z|x)] + Cov_x[E_q(z|x)] over a batch of diagonal Gaussians; loc, scale (M, D) -> (D, D).

    The covariance of the means is the biased (1/M) one, as in disentanglement_lib's DIP-VAE.
    """
    centred = loc - loc.mean(0)
    return torch.diag((scale**2).mean(0)) + centred.T @ centred / loc.shape[0]


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """lambda_od sum_{i != j} C_ij^2 + lambda_d sum_i (C_ii - 1)^2 (Kumar et al. 2018, DIP-VAE)."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * (off**2).sum() + lambda_d * ((diag - 1) ** 2).sum()


def capacity_at(step: int, capacity_max: float, steps: int) -> float:
    """Burgess et al.'s capacity C (nats per image) at optimiser step ``step`` (0-based): C_max min(1, step / steps)."""
    return capacity_max * min(1.0, step / steps)


def permute_dims(z: torch.Tensor) -> torch.Tensor:
    """Each column of z (M, D) permuted independently across the batch: a draw from prod_d q(z_d) (Kim & Mnih 2018)."""
    idx = torch.argsort(torch.rand(z.shape, device=z.device), dim=0)  # (M, D), one permutation per dim
    return torch.gather(z, 0, idx)


def discriminator_loss(discriminator: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a discriminator telling codes z (M, D) of q(z) (label 1) from permuted ones (label 0).

    ``discriminator`` maps (M, D) to logits (M,); at its optimum the logit is log q(z) / prod_d q(z_d).
    Mean over the batch, 1/2 per class as in disentanglement_lib.
    """
    z = z.detach()
    real = discriminator(z)
    fake = discriminator(permute_dims(z))
    return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())


def density_ratio_loss(
    discriminator: Callable[[torch.Tensor], torch.Tensor], a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of ``discriminator`` on samples ``a`` (label 1) and ``b`` (label 0).

    Its optimal logit is log p_a(z) / p_b(z).
    """
    return 0.5 * (F.softplus(-discriminator(a)).mean() + F.softplus(discriminator(b)).mean())


# --- objectives -----------------------------------------------------------------------------------


class _Objective:
    """Mixin over a term-reporting ELBO: reads the latent site and replaces ``particle_loss``."""

    term_names: tuple[str, ...] = ()

    def __init__(self, *args, latent_site: str = "z", **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.latent_site = latent_site

    def latent(self, guide_trace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # noqa: ANN001
        """(z, loc, scale) of the guide's latent site, each (M, D); the guide must be a diagonal Normal."""
        site = guide_trace.nodes[self.latent_site]
        base = getattr(site["fn"], "base_dist", site["fn"])
        if not isinstance(base, torch.distributions.Normal):
            raise ValueError(f"{type(self).__name__}: guide site {self.latent_site!r} must be a Normal, got {base}")
        z, loc, scale = site["value"], base.loc, base.scale
        if z.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}: latent {self.latent_site!r} must be (batch, dim), got {tuple(z.shape)}"
            )
        return z, loc.expand_as(z), scale.expand_as(z)


def _base(elbo: str) -> type:
    return {"trace": TermsTrace_ELBO, "tracemeanfield": TermsTraceMeanField_ELBO}[elbo]


class _BetaTCVAE(_Objective):
    term_names = ("mi", "tc", "dim_kl")

    def __init__(self, beta_tc: float, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.beta_tc = beta_tc

    def particle_loss(self, model_trace, guide_trace, elbo, recon, kl):  # noqa: ANN001, ANN201
        terms = {k: v.sum() for k, v in tc_decomposition(*self.latent(guide_trace)).items()}
        extra = (self.beta_tc - 1.0) * terms["tc"] if self.beta_tc != 1.0 else 0.0
        return -elbo + extra, terms


class _FactorVAE(_Objective):
    term_names = ("tc",)

    def __init__(self, gamma: float, discriminator: Callable[[torch.Tensor], torch.Tensor], **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.gamma = gamma
        self.discriminator = discriminator
        self.last_latent: torch.Tensor | None = None

    def particle_loss(self, model_trace, guide_trace, elbo, recon, kl):  # noqa: ANN001, ANN201
        z = self.latent(guide_trace)[0]
        self.last_latent = z.detach()
        tc = self.discriminator(z).sum()  # sum_i log D(z_i) / (1 - D(z_i))
        extra = self.gamma * tc if self.gamma != 0.0 else 0.0
        return -elbo + extra, {"tc": tc}


class _DIPVAE2(_Objective):
    term_names = ("dip",)

    def __init__(self, lambda_od: float, lambda_d: float, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.lambda_od, self.lambda_d = lambda_od, lambda_d

    def particle_loss(self, model_trace, guide_trace, elbo, recon, kl):  # noqa: ANN001, ANN201
        z, loc, scale = self.latent(guide_trace)
        penalty = z.shape[0] * dip_penalty(aggregate_covariance(loc, scale), self.lambda_od, self.lambda_d)
        return -elbo + (penalty if self.lambda_od or self.lambda_d else 0.0), {"dip": penalty}


class _CapacityVAE(_Objective):
    term_names = ("capacity",)

    def __init__(self, gamma: float, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.gamma = gamma
        self.capacity = 0.0  # nats per image; the trainer sets it from the step (capacity_at)

    def particle_loss(self, model_trace, guide_trace, elbo, recon, kl):  # noqa: ANN001, ANN201
        m = self.latent(guide_trace)[0].shape[0]
        target = m * self.capacity
        return -recon + self.gamma * (kl - target).abs(), {"capacity": recon.new_tensor(target)}


def _make(mixin: type, elbo: str) -> type:
    return type(mixin.__name__.lstrip("_") + "_" + _base(elbo).__name__, (mixin, _base(elbo)), {})


def BetaTCVAE(beta_tc: float, elbo: str = "trace", **kwargs) -> TermsTrace_ELBO:  # noqa: N802, ANN003
    """β-TCVAE loss: -ELBO + (beta_tc - 1) TC by minibatch-weighted sampling; terms mi, tc, dim_kl."""
    return _make(_BetaTCVAE, elbo)(beta_tc=beta_tc, **kwargs)


def FactorVAE(gamma: float, discriminator: Callable[[torch.Tensor], torch.Tensor], elbo: str = "trace", **kwargs):  # noqa: N802, ANN003, ANN201
    """FactorVAE loss: -ELBO + gamma sum_i logit D(z_i); term tc.

    ``last_latent`` keeps the codes of the last call for the discriminator's step.
    """
    return _make(_FactorVAE, elbo)(gamma=gamma, discriminator=discriminator, **kwargs)


def DIPVAE2(lambda_od: float, lambda_d: float, elbo: str = "trace", **kwargs):  # noqa: N802, ANN003, ANN201
    """DIP-VAE-II loss: -ELBO + M dip_penalty(Cov_q(z)); term dip."""
    return _make(_DIPVAE2, elbo)(lambda_od=lambda_od, lambda_d=lambda_d, **kwargs)


def CapacityVAE(gamma: float, elbo: str = "trace", **kwargs):  # noqa: N802, ANN003, ANN201
    """Burgess et al.'s loss: -recon + gamma |KL - M C|, with C in ``.capacity`` (nats per image); term capacity."""
    return _make(_CapacityVAE, elbo)(gamma=gamma, **kwargs)


class IWAE(RenyiELBO):
    """The IWAE bound (Burda et al. 2016) as Pyro's RenyiELBO at alpha = 0, reporting its terms, no host sync.

    loss = -sum_n log 1/K sum_k w_nk, log w_nk = log p(x_n, z_nk) - log q(z_nk | x_n) with the sites'
    scales applied (so a beta scale on the latent site weights log p(z) - log q(z|x) inside each
    log-weight). ``last_terms``: the loss, and recon / kl averaged over the K particles (their
    difference is the K-sample ELBO). Independent plates (the data plate) stay separate inside the
    log-mean-exp, as in Pyro's RenyiELBO; a subsampled plate's scale would land inside it too, so the
    data plate must not subsample. Pyro's RenyiELBO has no ``differentiable_loss``; this is it, for
    reparameterised guides: the gradient of the log-mean-exp is Pyro's normalised-weight surrogate.
    """

    def __init__(self, num_particles: int = 5, max_plate_nesting: int = 1) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        super().__init__(alpha=0.0, num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=True)  # fmt: skip
        self.last_terms: dict[str, torch.Tensor] = {}

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:  # noqa: ANN001, ANN002, ANN003
        log_w, recon, kl = [], [], []
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
            lw = r = k = 0.0
            for site in model_trace.nodes.values():
                if site["type"] != "sample":
                    continue
                lw = lw + torch_sum(site["log_prob"], sum_dims)
                unscaled = torch_sum(site["unscaled_log_prob"], sum_dims)
                if site["is_observed"]:
                    r = r + unscaled
                else:
                    k = k - unscaled
            for site in guide_trace.nodes.values():
                if site["type"] != "sample":
                    continue
                if not site["fn"].has_rsample:
                    raise NotImplementedError("IWAE: the guide must be reparameterised")
                lw = lw - torch_sum(site["log_prob"], sum_dims)
                k = k + torch_sum(site["unscaled_log_prob"], sum_dims)
            log_w.append(lw)
            recon.append(r)
            kl.append(k)
        if self.vectorize_particles and self.num_particles > 1:
            lw, r, k = log_w[0], recon[0], kl[0]  # (K, N)
        else:
            lw, r, k = torch.stack(log_w), torch.stack(recon), torch.stack(kl)
        bound = torch.logsumexp(lw, dim=0) - math.log(self.num_particles)  # (N,)
        loss = -bound.sum()
        self.last_terms = {"loss": loss.detach(), "recon": r.sum(-1).mean().detach(), "kl": k.sum(-1).mean().detach()}
        return loss
