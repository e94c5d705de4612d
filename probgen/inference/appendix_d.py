"""Kingma & Welling (2013), Appendix D, made safe for multimodal posteriors: per-mode estimates.

Since 1/p(x) = E_{p(z|x)}[q(z) / p(x, z)] for any normalised density q, log p(x) follows from
posterior draws and a density q fitted to other posterior draws. probgen does this per data point and
per *mode*:

1. **Overdispersed starts** (:func:`overdispersed_init`): half the chains start from the encoder,
   half from prior draws annealed to the posterior by a short tempered HMC run (geometric inverse
   temperatures), so that chains can land in modes the encoder does not know about.
2. **Modes** (:func:`cluster_chains`): per point, chains whose means lie within ``mode_separation``
   within-chain standard deviations of each other (Mahalanobis, transitively) form one mode. Each
   mode gets a shrunk full-covariance Gaussian q_k fitted to its chains' fit-stage draws.
3. **Per-mode estimate**: z-space is partitioned into regions R_k = {z : q_k(z) is the largest}; by
   the identity restricted to a region, 1 / p(x, z in R_k) = E_{p(z | x, R_k)}[q_k(z) 1_{R_k}(z) /
   (m_k p(x, z))] with m_k = P_{q_k}(R_k) (a Monte Carlo integral over q_k, no decoder pass), and
   p(x) = sum_k p(x, R_k). The draws that fall in R_k estimate its term, whichever chain made them.

Why per mode: chains that do not cross between modes visit them in proportions set by where they
started, not by the modes' masses, so pooling their draws (even under a mixture q whose weights are
the chains' fractions, still a valid normalised q) gives 1/p(x) times sum_k f_k pi_k / P_k, which is
1 only when the chain fractions f_k equal the unknown masses P_k. The per-mode sum needs only that
the draws within each region follow the posterior restricted to that region, which holds both when
chains mix between modes and when each stays in its basin. With one mode it is exactly the classic
estimator. What it cannot fix is a mode no chain visited: that is what the overdispersed starts and
the AIS cross-check (``missed-mode``) are for.

Per point, the result carries a Monte Carlo standard error (batch means over each chain's draws, as
a ratio estimator per region, combined by the delta method) and flags: ``rhat`` and ``ess`` computed
*within* modes (chains in different modes make the across-chain R-hat huge, which is expected here
and handled by the per-mode estimate), ``divergences``, and ``heavy-tailed-weights`` (Pareto k-hat
of the weights q / p(x, z) > 0.7).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import arviz as az
import numpy as np
import torch

from probgen.inference.hmc import HMCResult, run_hmc
from probgen.inference.potential import LatentTarget
from probgen.inference.result import LoglikResult
from probgen.inference.transition import find_reasonable_step_size, hmc_transition, init_state
from probgen.inference.weights import KHAT_MAX, pareto_khat

__all__ = [
    "Modes",
    "appendix_d",
    "appendix_d_from_samples",
    "chain_checks",
    "cluster_chains",
    "fit_gaussian",
    "fit_modes",
    "overdispersed_init",
]

Q_FITS = ("per-mode", "mixture", "single")


def fit_gaussian(samples: torch.Tensor, shrink: float) -> torch.distributions.MultivariateNormal:
    """Per-point full-covariance Gaussian fit to samples (C, S, N, D), covariance scaled by ``shrink``.

    ``shrink`` < 1 makes q lighter-tailed than a Gaussian posterior of the same covariance, which the
    Appendix D estimator needs for finite variance (q^2 / p(z | x) must be integrable).
    """
    c, s, n, d = samples.shape
    labels = torch.zeros(n, c, dtype=torch.long, device=samples.device)
    modes = fit_modes(samples, labels, shrink)
    return torch.distributions.MultivariateNormal(modes.mean[:, 0], scale_tril=modes.scale_tril[:, 0])


# --- overdispersed starts ---------------------------------------------------------------------------


def overdispersed_init(
    target: LatentTarget,
    encoder: torch.distributions.Distribution | None,
    num_chains: int,
    *,
    encoder_fraction: float = 0.5,
    particles_per_chain: int = 4,
    anneal_steps: int = 100,
    leapfrog_steps: int = 5,
    beta_min: float = 1e-4,
    plausible_nats: float = 10.0,
    target_accept_prob: float = 0.65,
) -> torch.Tensor:
    """Starting points z0 (C, N, D) for Appendix D chains: some from the encoder, the rest annealed.

    ``round(encoder_fraction x num_chains)`` chains (at least one when ``encoder`` is given and the
    fraction is positive) start at encoder draws q(z | x), which sit near the mode the encoder knows.
    For the others, ``particles_per_chain`` times as many prior draws z ~ p(z), which cover every
    basin, are carried towards the posterior through ``anneal_steps`` tempered targets
    p(z) p(x | z)^beta, beta geometric from ``beta_min`` to 1, one HMC transition of
    ``leapfrog_steps`` steps each (each point's step size follows its acceptance, as in AIS). Among
    the particles whose log p(x, z) is within ``plausible_nats`` + D of the best, the starts are
    chosen by farthest-point selection (in units of the particles' spread per latent): first the best
    particle, then repeatedly the one farthest from those chosen. So a basin that any particle
    reached gets a chain, whatever its share of the particles: with 4 particles per chain and 4
    annealed chains, a basin that attracts 19% of the particles is missed with probability
    0.81^16 = 3% instead of 0.81^4 = 43%.

    No importance weights are kept (these are starting points; warm-up follows), and the chains'
    share of each mode need not match its mass: the per-mode estimator of
    :func:`appendix_d_from_samples` does not rely on it. Cost: about
    anneal_steps x (leapfrog_steps + 1) gradient evaluations per particle.
    """
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    if not 0 <= encoder_fraction <= 1:
        raise ValueError(f"encoder_fraction must be in [0, 1], got {encoder_fraction}")
    if particles_per_chain < 1:
        raise ValueError(f"particles_per_chain must be >= 1, got {particles_per_chain}")
    n_enc = 0 if encoder is None else min(num_chains, round(encoder_fraction * num_chains))
    if encoder is not None and encoder_fraction > 0:
        n_enc = max(n_enc, 1)
    parts = []
    if n_enc:
        parts.append(encoder.sample((n_enc,)).detach())
    n_prior = num_chains - n_enc
    if n_prior:
        z = target.sample_prior(n_prior * (particles_per_chain if anneal_steps > 0 else 1))
        if anneal_steps > 0:
            z, log_joint = _anneal(target, z, anneal_steps, leapfrog_steps, beta_min, target_accept_prob)
            z = _farthest_points(z, log_joint, n_prior, plausible_nats + target.latent_dim)
        parts.append(z.to(parts[0].dtype) if parts else z)
    return torch.cat(parts).detach()


def _anneal(
    target: LatentTarget, z: torch.Tensor, steps: int, leapfrog: int, beta_min: float, target_accept: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tempered HMC from prior draws z (M, N, D); returns the end states and their log p(x, z) (M, N)."""
    betas = torch.logspace(math.log10(beta_min), 0.0, steps, dtype=torch.float64).tolist()
    potential = target.potential(betas[0])
    state = init_state(potential, z)
    step = find_reasonable_step_size(state, potential, z.new_full((target.num_data,), 0.1))
    for beta in betas:
        potential = target.potential(beta)
        state = init_state(potential, state.z)
        state, acc, _ = hmc_transition(state, potential, step, leapfrog, jitter=0.1)
        step = step * torch.exp(0.5 * (acc.mean(0) - target_accept))
    with torch.no_grad():
        lp, ll = target.log_joint(state.z)
    return state.z.detach(), (lp + ll).detach()


def _farthest_points(z: torch.Tensor, log_joint: torch.Tensor, count: int, nats: float) -> torch.Tensor:
    """``count`` of the particles z (M, N, D) per point: the best, then farthest-first among plausible ones."""
    m, n, _ = z.shape
    plausible = log_joint >= log_joint.amax(0) - nats  # (M, N)
    scale = z.std(0, keepdim=True).clamp_min(1e-12) if m > 1 else torch.ones_like(z[:1])
    u = z / scale
    first = torch.where(plausible, log_joint, torch.full_like(log_joint, -math.inf)).argmax(0)  # (N,)
    points = torch.arange(n, device=z.device)
    chosen = [first]
    mind = (u - u[first, points]).square().sum(-1)  # (M, N): squared distance to the nearest chosen
    for _ in range(count - 1):
        score = torch.where(plausible, mind, torch.full_like(mind, -1.0))
        nxt = score.argmax(0)
        chosen.append(nxt)
        mind = torch.minimum(mind, (u - u[nxt, points]).square().sum(-1))
    return torch.stack([z[idx, points] for idx in chosen])


# --- modes ------------------------------------------------------------------------------------------


def _chain_moments(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per chain and point: mean (N, C, D) and covariance (N, C, D, D) of samples (C, S, N, D)."""
    z = samples.double()
    mean = z.mean(1)  # (C, N, D)
    centred = z - mean[:, None]
    cov = torch.einsum("csnd,csne->cnde", centred, centred) / max(z.shape[1] - 1, 1)
    return mean.transpose(0, 1), cov.transpose(0, 1)


def cluster_chains(samples: torch.Tensor, mode_separation: float = 3.0) -> torch.Tensor:
    """Group each point's chains into modes from their draws (C, S, N, D); returns labels (N, C).

    Chains i and j are neighbours when the Mahalanobis distance between their means, under the
    average of their within-chain covariances, is below ``mode_separation``; modes are the connected
    components (transitive closure by repeated squaring of the adjacency, batched over points). A
    point's modes are numbered 0, 1, ... in the order of their lowest chain index. Chains of one
    well-mixed posterior differ in their means by ~sqrt(2 D / ESS) standard deviations, far below 3;
    chains in separate basins by the basins' separation.
    """
    mean, cov = _chain_moments(samples)
    n, c, d = mean.shape
    eye = torch.eye(d, dtype=mean.dtype, device=mean.device)
    pooled = 0.5 * (cov[:, :, None] + cov[:, None, :])  # (N, C, C, D, D)
    scale = pooled.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)
    pooled = pooled + 1e-9 * scale[..., None, None] * eye
    diff = mean[:, :, None] - mean[:, None, :]  # (N, C, C, D)
    dist2 = (diff.unsqueeze(-2) @ torch.linalg.solve(pooled, diff.unsqueeze(-1))).reshape(n, c, c)
    adj = (dist2 < mode_separation**2) | torch.eye(c, dtype=torch.bool, device=mean.device)
    reach = adj.double()
    for _ in range(max(1, math.ceil(math.log2(max(c, 2))))):
        reach = ((reach @ reach) > 0).double()
    root = reach.argmax(-1)  # the first chain each chain reaches = the lowest index of its component
    is_root = root == torch.arange(c, device=root.device)
    return (is_root.long().cumsum(-1) - 1).gather(1, root)  # roots renumbered 0..M-1 per point


class Modes:
    """Per point and mode k (K slots = the most modes of any point): a Gaussian q_k and its chains.

    ``mean`` (N, K, D), ``scale_tril`` (N, K, D, D), ``count`` (N, K) chains per mode (0: empty slot),
    ``labels`` (N, C).
    """

    def __init__(self, mean: torch.Tensor, scale_tril: torch.Tensor, count: torch.Tensor, labels: torch.Tensor):
        self.mean, self.scale_tril, self.count, self.labels = mean, scale_tril, count, labels

    @property
    def present(self) -> torch.Tensor:
        """(N, K) bool: the slots that hold a mode."""
        return self.count > 0

    @property
    def num_modes(self) -> torch.Tensor:
        return self.present.sum(-1)

    def log_q(self, z: torch.Tensor) -> torch.Tensor:
        """log q_k(z) for z (..., N, D): (..., N, K); -inf for empty slots."""
        q = torch.distributions.MultivariateNormal(self.mean, scale_tril=self.scale_tril)
        lq = q.log_prob(z.double().unsqueeze(-2))
        return torch.where(self.present, lq, torch.full_like(lq, -math.inf))

    def region(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the region R_k that holds z (..., N, D): the mode of largest q_k(z)."""
        return self.log_q(z).argmax(-1)

    @torch.no_grad()
    def region_mass(self, num_draws: int = 4096, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """m_k = P_{q_k}(z in R_k) by Monte Carlo from q_k (N, K), and the variance of log m_k."""
        k = self.mean.shape[1]
        if k == 1:  # every point has one mode, whose region is all of z-space
            return torch.ones_like(self.mean[..., 0]), torch.zeros_like(self.mean[..., 0])
        q = torch.distributions.MultivariateNormal(self.mean, scale_tril=self.scale_tril)
        hits = torch.zeros_like(self.mean[..., 0])
        done = 0
        while done < num_draws:
            m = min(chunk, num_draws - done)
            z = q.sample((m,)).transpose(1, 2)  # (m, K, N, D): draw of mode k's q for point n
            own = self.log_q(z).argmax(-1)  # (m, K, N): the region each draw falls in
            hits += (own == torch.arange(k, device=own.device)[:, None]).sum(0).T.to(hits.dtype)
            done += m
        mass = (hits + 0.5) / (num_draws + 1.0)  # never 0: a mode always holds its own centre
        mass = torch.where(self.num_modes[:, None] > 1, mass, torch.ones_like(mass))
        return mass, (1 - mass) / (mass * num_draws)


def fit_modes(samples: torch.Tensor, labels: torch.Tensor, shrink: float) -> Modes:
    """Shrunk full-covariance Gaussian per mode from the draws (C, S, N, D) of the chains labelled so."""
    c, s, n, d = samples.shape
    z = samples.double()
    member = torch.nn.functional.one_hot(labels, int(labels.max()) + 1).double()  # (N, C, K)
    count = member.sum(1)  # (N, K)
    draws = (count * s).clamp_min(1)
    mean = torch.einsum("nck,csnd->nkd", member, z) / draws[..., None]
    centred = z[:, :, :, None] - mean  # (C, S, N, K, D)
    cov = torch.einsum("nck,csnkd,csnke->nkde", member, centred, centred) / (draws - 1).clamp_min(1)[..., None, None]
    eye = torch.eye(d, dtype=z.dtype, device=z.device)
    jitter = 1e-6 * cov.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    cov = torch.where((count > 0)[..., None, None], cov + jitter[..., None, None] * eye, eye)
    return Modes(mean, torch.linalg.cholesky(shrink * cov), count, labels)


# --- chain diagnostics within modes ----------------------------------------------------------------


def _rhat_ess(z: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Worst-latent rank-normalised R-hat, bulk and tail ESS of z (C, S, N, D), and bulk ESS of lp (C, S, N)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = az.convert_to_dataset({"z": z, "lp": lp})
        rhat = az.rhat(ds, var_names=["z"])["z"].values
        bulk = az.ess(ds, method="bulk")
        tail = az.ess(ds, var_names=["z"], method="tail")["z"].values
    return rhat.max(-1), bulk["z"].values.min(-1), tail.min(-1), bulk["lp"].values


def chain_checks(
    run: HMCResult, labels: torch.Tensor, rhat_max: float = 1.01, min_ess_per_chain: float = 100.0
) -> dict[str, torch.Tensor]:
    """Per point: R-hat and ESS of z within modes, ESS of lp, divergences; and the failures.

    For a point whose chains form one mode this is ArviZ's rank-normalised split R-hat and bulk/tail
    ESS over all chains (as :func:`probgen.inference.diagnostics.diagnose`). For a point with several
    modes, each mode's chains are checked on their own (a single chain by its split halves): R-hat is
    the worst over modes, ESS per chain the smallest, and ESS of lp the sum over modes. Returns (N,)
    tensors ``rhat``, ``ess_per_chain`` (worst of bulk and tail), ``ess_lp``, ``divergences``, and bool
    ``fail_rhat``, ``fail_ess``, ``fail_divergences`` (NaN diagnostics fail).
    """
    z = run.samples.detach().double().cpu().numpy()
    lp = -run.potential.detach().double().cpu().numpy()
    c = z.shape[0]
    rhat, bulk, tail, ess_lp = _rhat_ess(z, lp)
    ess_pc = np.minimum(bulk, tail) / c
    labels_np = labels.cpu().numpy()
    for i in np.nonzero((labels_np != labels_np[:, :1]).any(1))[0]:  # points with several modes
        r, e, lps = [], [], 0.0
        for k in np.unique(labels_np[i]):
            idx = np.nonzero(labels_np[i] == k)[0]
            zk, lpk = z[idx][:, :, i : i + 1], lp[idx][:, :, i : i + 1]
            if len(idx) == 1:  # ArviZ wants 2 chains: give it the halves (it splits them again)
                half = zk.shape[1] // 2
                zk, lpk = zk[0, : 2 * half].reshape(2, half, *zk.shape[2:]), lpk[0, : 2 * half].reshape(2, half, 1)
            rk, bk, tk, lk = _rhat_ess(zk, lpk)
            r.append(rk[0])
            e.append(min(bk[0], tk[0]) / len(idx))
            lps += lk[0]
        rhat[i], ess_pc[i], ess_lp[i] = max(r), min(e), lps
    div = run.diverging.sum((0, 1)).cpu()
    with np.errstate(invalid="ignore"):
        return {
            "rhat": torch.from_numpy(rhat),
            "ess_per_chain": torch.from_numpy(ess_pc),
            "ess_lp": torch.from_numpy(ess_lp),
            "divergences": div,
            "fail_rhat": torch.from_numpy(~(rhat <= rhat_max)),
            "fail_ess": torch.from_numpy(~(ess_pc >= min_ess_per_chain)),
            "fail_divergences": div > 0,
        }


# --- the estimator ----------------------------------------------------------------------------------


def _batch_index(c: int, s: int, num_batches: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Batch of each draw (C, S) for batch means: each chain's draws cut into contiguous batches."""
    b = max(1, min(num_batches, s // 2))
    return (torch.arange(c, device=device)[:, None] * b + torch.arange(s, device=device) * b // s), c * b


def _region_terms(
    log_w: torch.Tensor, region: torch.Tensor, k: int, num_batches: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per region: log of the mean weight (N, K), its relative variance by batch means, draw counts.

    ``log_w`` (C, S, N) are log weights q_k(z) / (m_k p(x, z)) of each draw under its region's q_k;
    ``region`` (C, S, N) the region of each draw. The region's mean weight is the ratio
    sum_b S_b / sum_b n_b of per-batch sums and counts; its variance is the ratio estimator's
    G / (G - 1) sum_b (S_b - u n_b)^2 / (sum_b n_b)^2 over G batches.
    """
    c, s, n = log_w.shape
    onehot = torch.nn.functional.one_hot(region, k).bool()  # (C, S, N, K)
    lw = torch.where(onehot, log_w[..., None], torch.full_like(log_w[..., None], -math.inf))
    shift = lw.amax((0, 1))  # (N, K)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    w = torch.exp(lw - shift)  # (C, S, N, K), 0 outside the region
    batch, g = _batch_index(c, s, num_batches, log_w.device)
    sums = torch.zeros(g, n, k, dtype=w.dtype, device=w.device).index_add_(0, batch.reshape(-1), w.reshape(c * s, n, k))
    cnts = torch.zeros_like(sums).index_add_(0, batch.reshape(-1), onehot.reshape(c * s, n, k).to(w.dtype))
    total_n = cnts.sum(0)
    u = sums.sum(0) / total_n.clamp_min(1)
    var = g / max(g - 1, 1) * (sums - u * cnts).square().sum(0) / total_n.clamp_min(1).square()
    rel = var / u.square()
    return torch.log(u) + shift, rel, total_n


def appendix_d_from_samples(
    target: LatentTarget,
    run: HMCResult,
    num_fit: int,
    shrink: float = 0.8,
    *,
    q_fit: str = "per-mode",
    mode_separation: float = 3.0,
    num_batches: int = 10,
    mass_draws: int = 4096,
    rhat_max: float = 1.01,
    min_ess_per_chain: float = 100.0,
    **info: Any,
) -> LoglikResult:
    """Stages 2 and 3 of Appendix D on posterior chains ``run`` (samples (C, S, N, D)), with se and flags.

    The first ``num_fit`` draws of each chain find the modes (:func:`cluster_chains`) and fit q; the
    remaining ones estimate log p(x), with -log p(x, z) read from ``run.potential`` (no decoder pass).
    ``q_fit``: ``"per-mode"`` (default; see the module docstring), ``"mixture"`` (one estimate with
    q = sum_k (chains in k / C) q_k: unbiased for 1/p(x) only if chains are spread over modes in
    proportion to their masses), or ``"single"`` (one Gaussian over all chains: the classic estimator).

    ``se`` is the Monte Carlo standard error in nats from batch means (``num_batches`` per chain);
    flags ``rhat``/``ess`` (within modes, thresholds ``rhat_max`` and ``min_ess_per_chain`` x chains),
    ``divergences`` (any), ``heavy-tailed-weights`` (Pareto k-hat > 0.7 in any region with draws).
    ``per_point`` holds ``num_modes``, ``rhat``, ``ess_per_chain``, ``ess_lp`` and ``khat``.
    """
    if not 0 < shrink <= 1:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    if q_fit not in Q_FITS:
        raise ValueError(f"q_fit must be one of {Q_FITS}, got {q_fit!r}")
    c, s, n, _ = run.samples.shape
    if not 2 <= num_fit < s:
        raise ValueError(f"num_fit must be in [2, {s}), got {num_fit}")
    fit = run.samples[:, :num_fit]
    labels = cluster_chains(fit, mode_separation)
    if q_fit == "single":
        labels = torch.zeros_like(labels)
    modes = fit_modes(fit, labels, shrink)
    fresh = run.samples[:, num_fit:].double()
    neg_log_joint = run.potential[:, num_fit:].double()  # -log p(x, z)
    lq = modes.log_q(fresh)  # (C, S', N, K)
    if q_fit == "mixture":
        log_pi = torch.log(modes.count / c)
        log_w = torch.logsumexp(lq + log_pi, -1) + neg_log_joint
        region = torch.zeros_like(neg_log_joint, dtype=torch.long)
        log_mass_var = torch.zeros(n, 1, dtype=torch.float64, device=fresh.device)
        k = 1
    else:
        k = modes.mean.shape[1]
        region = lq.argmax(-1)
        mass, log_mass_var = modes.region_mass(mass_draws) if q_fit == "per-mode" else (None, None)
        lq_own = lq.gather(-1, region[..., None])[..., 0]
        if mass is not None:
            lq_own = lq_own - torch.log(mass).expand(c, s - num_fit, n, k).gather(-1, region[..., None])[..., 0]
        log_w = lq_own + neg_log_joint  # log q_k(z) / (m_k p(x, z))
        log_mass_var = torch.zeros(n, k, dtype=torch.float64, device=fresh.device) if mass is None else log_mass_var
    log_u, rel, counts = _region_terms(log_w, region, k, num_batches)
    seen = counts > 0
    neg = torch.where(seen, -log_u, torch.full_like(log_u, -math.inf))  # log p(x, R_k)
    log_px = torch.logsumexp(neg, -1)
    share = torch.softmax(neg, -1)
    se = (share.square() * torch.where(seen, rel + log_mass_var, torch.zeros_like(rel))).sum(-1).sqrt()

    checks = chain_checks(run, labels, rhat_max, min_ess_per_chain)
    reff = (checks["ess_lp"] / (c * s)).clamp(1e-3, 1.0)
    khat = _region_khat(log_w, region, counts, reff)
    result = LoglikResult(
        "appendix-d",
        log_px.detach().cpu(),
        target.data_dim,
        {
            "chains": c,
            "fit_draws": num_fit,
            "estimate_draws": s - num_fit,
            "shrink": shrink,
            "q_fit": q_fit,
            "points_with_several_modes": int((modes.num_modes > 1).sum()),
            **info,
        },
        se=se.detach().cpu(),
        per_point={
            "num_modes": modes.num_modes.cpu(),
            "rhat": checks["rhat"],
            "ess_per_chain": checks["ess_per_chain"],
            "ess_lp": checks["ess_lp"],
            "khat": khat,
        },
    )
    for reason, failed in (
        ("rhat", checks["fail_rhat"]),
        ("ess", checks["fail_ess"]),
        ("divergences", checks["fail_divergences"]),
        ("heavy-tailed-weights", khat > KHAT_MAX),
    ):
        for i in failed.nonzero().flatten().tolist():
            result.add_flag(i, reason)
    return result


def _region_khat(log_w: torch.Tensor, region: torch.Tensor, counts: torch.Tensor, reff: torch.Tensor) -> torch.Tensor:
    """Worst Pareto k-hat over each point's regions that hold >= 25 draws (N,); NaN if none does."""
    c, s, n = log_w.shape
    flat_w, flat_r = log_w.reshape(c * s, n).cpu(), region.reshape(c * s, n).cpu()
    counts, reff = counts.cpu(), reff.cpu()
    single = (counts > 0).sum(-1) <= 1
    out = torch.full((n,), math.nan, dtype=torch.float64)
    if single.any():
        idx = single.nonzero().flatten()
        out[idx] = pareto_khat(flat_w[:, idx], reff[idx])
    for i in (~single).nonzero().flatten().tolist():
        ks = [
            float(pareto_khat(flat_w[flat_r[:, i] == k, i : i + 1], reff[i : i + 1])[0])
            for k in (counts[i] >= 25).nonzero().flatten().tolist()
        ]
        ks = [v for v in ks if not math.isnan(v)]
        out[i] = max(ks) if ks else math.nan
    return out


def appendix_d(
    target: LatentTarget,
    z0: torch.Tensor,
    num_warmup: int,
    num_samples: int,
    shrink: float = 0.8,
    progress: bool = False,
    *,
    q_fit: str = "per-mode",
    mode_separation: float = 3.0,
    num_batches: int = 10,
    rhat_max: float = 1.01,
    min_ess_per_chain: float = 100.0,
    **hmc_options: Any,
) -> tuple[LoglikResult, HMCResult]:
    """Kingma & Welling (2013), Appendix D, per mode: log p(x) from posterior samples and fitted densities.

    1. Run :func:`run_hmc` from z0 (C, N, D) (e.g. :func:`overdispersed_init`) for ``num_warmup`` +
       2 x ``num_samples`` transitions.
    2. Find each point's modes among its chains and fit q_k = N(mean_k, shrink x cov_k) to the first
       ``num_samples`` draws of each mode's chains.
    3. With the next ``num_samples`` draws (fresh, not used by the fit), sum the per-mode estimates of
       p(x, z in R_k) (:func:`appendix_d_from_samples`).

    Returns the estimate (with se and flags) and the HMC run of both stages (for diagnostics).
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    run = run_hmc(target.potential(), z0, num_warmup, 2 * num_samples, progress=progress, desc="HMC", **hmc_options)
    result = appendix_d_from_samples(
        target,
        run,
        num_samples,
        shrink,
        q_fit=q_fit,
        mode_separation=mode_separation,
        num_batches=num_batches,
        rhat_max=rhat_max,
        min_ess_per_chain=min_ess_per_chain,
        warmup=num_warmup,
        leapfrog_steps=run.num_steps,
    )
    return result, run
