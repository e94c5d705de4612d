"""The VAE objectives against known answers: TC of Gaussians, density ratios, IWAE vs loglik, exact reductions."""

import math

import pyro
import pytest
import torch

from probgen.config import VAEConfig
from probgen.inference.loglik.iwae import elbo_iwae
from probgen.inference.mcmc.potential import encoder_proposal, from_pyro_model
from probgen.inference.svi.elbo import TermsTrace_ELBO, TermsTraceMeanField_ELBO
from probgen.inference.svi.objectives import (
    DIPVAE2,
    IWAE,
    BetaTCVAE,
    CapacityVAE,
    FactorVAE,
    aggregate_covariance,
    capacity_at,
    density_ratio_loss,
    dip_penalty,
    discriminator_loss,
    permute_dims,
    tc_decomposition,
)
from probgen.models.latent_discriminator import LatentDiscriminator
from probgen.models.vae import VAE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _correlation(rho: float, d: int = 3) -> torch.Tensor:
    """An AR(1) correlation matrix R_ij = rho^|i-j|."""
    i = torch.arange(d, dtype=torch.float64)
    return rho ** (i[:, None] - i[None, :]).abs()


def _gaussian_batch(corr: torch.Tensor, m: int, s: float, seed: int):
    """A batch whose aggregate posterior is N(0, corr): q(z|x_j) = N(mu_j, s^2 I), mu_j ~ N(0, corr - s^2 I)."""
    g = torch.Generator().manual_seed(seed)
    d = corr.shape[0]
    chol = torch.linalg.cholesky(corr - s**2 * torch.eye(d, dtype=corr.dtype))
    loc = torch.randn(m, d, generator=g, dtype=corr.dtype) @ chol.T
    scale = torch.full_like(loc, s)
    z = loc + scale * torch.randn(m, d, generator=g, dtype=corr.dtype)
    return z, loc, scale


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_tc_estimator_gives_the_closed_form_on_gaussians(rho, seed):
    corr = _correlation(rho, d=2)
    exact = -0.5 * torch.logdet(corr).item()  # KL(N(0, R) || prod_d N(0, 1)) for a correlation matrix R: 0, 0.51
    terms = tc_decomposition(*_gaussian_batch(corr, m=1000, s=0.3, seed=seed))
    # measured errors at M = 1000 are within 0.025 nats; Chen et al.'s 1/(NM) would add log N
    assert terms["tc"].mean().item() == pytest.approx(exact, abs=0.04)


def test_tc_estimator_sees_correlation_a_factorised_one_misses():
    tc_indep = tc_decomposition(*_gaussian_batch(_correlation(0.0), 500, 0.3, 0))["tc"].mean()
    tc_corr = tc_decomposition(*_gaussian_batch(_correlation(0.8), 500, 0.3, 0))["tc"].mean()
    assert tc_corr - tc_indep > 0.8  # exact difference 1.02 nats in 3-D


def test_mi_tc_dimkl_add_up_to_the_one_sample_kl():
    z, loc, scale = _gaussian_batch(_correlation(0.5), 300, 0.3, 0)
    t = tc_decomposition(z, loc, scale)
    q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dim_kl"], q - p)
    assert (t["mi"] <= math.log(300) + 1e-9).all()  # the batch estimate of I(x; z) is at most log M


def test_aggregate_covariance_is_the_covariance_of_the_codes():
    corr = _correlation(0.6)
    z, loc, scale = _gaussian_batch(corr, 20000, 0.3, 3)
    torch.testing.assert_close(aggregate_covariance(loc, scale), corr, atol=0.05, rtol=0)
    torch.testing.assert_close(aggregate_covariance(loc, scale), torch.cov(z.T), atol=0.03, rtol=0)


def test_dip_penalty_weights_off_diagonal_and_diagonal_separately():
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    assert dip_penalty(cov, 1.0, 0.0).item() == pytest.approx(2 * 0.25)
    assert dip_penalty(cov, 0.0, 1.0).item() == pytest.approx(1.0)
    assert dip_penalty(torch.eye(3), 10.0, 10.0).item() == 0.0


def test_capacity_grows_linearly_to_its_maximum():
    assert [capacity_at(s, 25.0, 100) for s in (0, 50, 100, 1000)] == [0.0, 12.5, 25.0, 25.0]


def test_permute_dims_keeps_each_marginal_and_breaks_dependence():
    torch.manual_seed(0)
    z = torch.randn(5000, 1).repeat(1, 2)  # perfectly correlated
    zp = permute_dims(z)
    for d in range(2):
        assert torch.equal(zp[:, d].sort().values, z[:, d].sort().values)
    assert abs(torch.corrcoef(zp.T)[0, 1].item()) < 0.05


def _train(disc, loss_of_batch, steps=400, lr=3e-3):
    opt = torch.optim.Adam(disc.parameters(), lr=lr)
    for _ in range(steps):
        loss = loss_of_batch()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_discriminator_learns_the_log_density_ratio_of_two_gaussians():
    torch.manual_seed(0)
    mu_a, mu_b = torch.tensor([1.0, 0.0]), torch.tensor([-0.5, 0.5])
    disc = LatentDiscriminator(2, (32, 32))
    _train(disc, lambda: density_ratio_loss(disc, torch.randn(256, 2) + mu_a, torch.randn(256, 2) + mu_b))
    z = torch.randn(2000, 2) * 0.7 + (mu_a + mu_b) / 2  # where both have mass
    exact = z @ (mu_a - mu_b) - 0.5 * (mu_a @ mu_a - mu_b @ mu_b)  # log N(z; a, I) - log N(z; b, I)
    with torch.no_grad():
        err = disc(z) - exact
    assert err.abs().mean().item() < 0.15 and err.mean().abs().item() < 0.1


def test_factorvae_discriminator_estimates_the_total_correlation():
    torch.manual_seed(1)
    corr = _correlation(0.8, 2).float()
    chol = torch.linalg.cholesky(corr)
    disc = LatentDiscriminator(2, (32, 32))
    _train(disc, lambda: discriminator_loss(disc, torch.randn(256, 2) @ chol.T))
    with torch.no_grad():
        tc = disc(torch.randn(20000, 2) @ chol.T).mean().item()  # E_q[log q(z) / prod q(z_d)]
    assert tc == pytest.approx(-0.5 * math.log(1 - 0.8**2), abs=0.1)  # 0.51 nats


# --- objectives on a tiny VAE ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def vae_and_batch():
    torch.manual_seed(0)
    cfg = VAEConfig(arch="mlp", hidden_dims=(32,), latent_dim=3, likelihood="bernoulli")
    vae = VAE(cfg, (1, 8, 8))
    x = (torch.rand(16, 1, 8, 8) < 0.3).float()
    return vae, x


def _loss(elbo, vae, x, seed=0):
    pyro.set_rng_seed(seed)
    with pyro.validation_enabled(True):
        loss = elbo.differentiable_loss(vae.model, vae.guide, x, 1.0)
    return loss, elbo.last_terms


@pytest.mark.parametrize(
    "elbo, neutral",
    [
        ("trace", lambda: BetaTCVAE(1.0)),
        ("trace", lambda: FactorVAE(0.0, LatentDiscriminator(3, (8,)))),
        ("trace", lambda: DIPVAE2(0.0, 0.0)),
        ("tracemeanfield", lambda: DIPVAE2(0.0, 0.0, elbo="tracemeanfield")),
        ("tracemeanfield", lambda: CapacityVAE(1.0, elbo="tracemeanfield")),  # gamma 1, C = 0: |KL| = KL
    ],
)
def test_neutral_weights_reduce_to_the_plain_elbo_exactly(vae_and_batch, elbo, neutral):
    vae, x = vae_and_batch
    plain = {"trace": TermsTrace_ELBO, "tracemeanfield": TermsTraceMeanField_ELBO}[elbo]()
    ref, ref_terms = _loss(plain, vae, x)
    loss, terms = _loss(neutral(), vae, x)
    assert torch.equal(loss, ref)
    for k in ("loss", "recon", "kl"):
        assert torch.equal(terms[k], ref_terms[k]), k


def test_each_objective_adds_only_its_own_term(vae_and_batch):
    vae, x = vae_and_batch
    ref, ref_t = _loss(TermsTrace_ELBO(), vae, x)
    disc = LatentDiscriminator(3, (8,))
    cap = CapacityVAE(100.0)
    cap.capacity = 2.0
    cases = {
        "tc": (BetaTCVAE(6.0), lambda t: 5.0 * t["tc"]),
        "factor": (FactorVAE(10.0, disc), lambda t: 10.0 * t["tc"]),
        "dip": (DIPVAE2(10.0, 5.0), lambda t: t["dip"]),
        "capacity": (cap, lambda t: 100.0 * (t["kl"] - 16 * 2.0).abs() - t["kl"]),  # replaces the KL term
    }
    for name, (objective, extra) in cases.items():
        loss, t = _loss(objective, vae, x)
        assert torch.equal(t["recon"], ref_t["recon"]) and torch.equal(t["kl"], ref_t["kl"]), name
        torch.testing.assert_close(loss, ref + extra(t), msg=name)
        assert not torch.equal(loss, ref), name


def test_tc_terms_of_the_objective_add_up_to_its_kl(vae_and_batch):
    vae, x = vae_and_batch
    _, t = _loss(BetaTCVAE(6.0), vae, x)
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dim_kl"], t["kl"])


def test_iwae_with_one_particle_is_the_elbo(vae_and_batch):
    vae, x = vae_and_batch
    ref, _ = _loss(TermsTrace_ELBO(), vae, x)
    loss, t = _loss(IWAE(num_particles=1), vae, x)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(t["loss"], -(t["recon"] - t["kl"]))


def test_iwae_bound_rises_with_k(vae_and_batch):
    vae, x = vae_and_batch
    means = []
    for k in (1, 10, 100):
        with torch.no_grad():
            means.append(-torch.stack([_loss(IWAE(num_particles=k), vae, x, seed=s)[0] for s in range(20)]).mean())
    assert means[0] < means[1] < means[2]
    assert means[2] - means[0] > 1.0  # nats per batch of 16 for this untrained model


def test_iwae_objective_matches_loglik_iwae_on_the_same_draws(vae_and_batch):
    vae, x = vae_and_batch
    k = 64
    with torch.no_grad():
        loss, terms = _loss(IWAE(num_particles=k), vae, x, seed=5)
        target = from_pyro_model(vae.model, x)
        proposal = encoder_proposal(vae.guide, x)
        pyro.set_rng_seed(5)
        elbo, iwae = elbo_iwae(target, proposal, num_samples=k, max_batch=k * len(x))  # one chunk: the same draws
    torch.testing.assert_close(-loss.double(), iwae.log_px.sum(), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close((terms["recon"] - terms["kl"]).double(), elbo.log_px.sum(), rtol=1e-5, atol=1e-3)


def test_iwae_gradient_matches_pyro_renyi_elbo(vae_and_batch):
    vae, x = vae_and_batch
    grads = []
    for make in (lambda: IWAE(num_particles=8), lambda: pyro.infer.RenyiELBO(0.0, 8, 1, vectorize_particles=True)):
        vae.zero_grad()
        pyro.set_rng_seed(3)
        elbo = make()
        if isinstance(elbo, IWAE):
            elbo.differentiable_loss(vae.model, vae.guide, x, 1.0).backward()
        else:
            elbo.loss_and_grads(vae.model, vae.guide, x, 1.0)
        grads.append(torch.cat([p.grad.flatten() for p in vae.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_objectives_refuse_a_non_normal_guide():
    def model():
        with pyro.plate("data", 4):
            pyro.sample("z", pyro.distributions.Normal(torch.zeros(4, 2), 1.0).to_event(1))

    def guide():
        with pyro.plate("data", 4):
            pyro.sample("z", pyro.distributions.Laplace(torch.zeros(4, 2), 1.0).to_event(1))

    with pytest.raises(ValueError, match="must be a Normal"):
        BetaTCVAE(2.0).differentiable_loss(model, guide)
