"""The VAE's training objective: beta-TCVAE, FactorVAE, DIP-VAE-II, Burgess et al.'s capacity (docs/zoo.md)."""

from __future__ import annotations

from dataclasses import dataclass

from probgen.config.base import _help, check, choice

OBJECTIVES = ("elbo", "beta-tcvae", "factor-vae", "dip-vae-ii", "capacity")


@dataclass
class ObjectiveConfig:
    """The VAE's training objective beyond the (beta-)ELBO (docs/zoo.md); the generative model is the same."""

    objective: str = _help(
        "elbo (beta-VAE with --beta), beta-tcvae (Chen et al. 2018), factor-vae (Kim & Mnih 2018), "
        "dip-vae-ii (Kumar et al. 2018) or capacity (Burgess et al. 2018)",
        default="elbo",
    )
    tc_beta: float = _help("beta-tcvae: weight of the total correlation (1: the ELBO)", default=6.0)
    factor_gamma: float = _help("factor-vae: weight of the discriminator's total-correlation estimate", default=10.0)
    factor_disc_hidden: tuple[int, ...] = _help(
        "factor-vae: hidden widths of the latent discriminator MLP", default=(1000, 1000, 1000, 1000, 1000, 1000)
    )
    factor_disc_lr: float = _help("factor-vae: Adam learning rate of the discriminator (betas 0.5, 0.9)", default=1e-4)
    dip_lambda_od: float = _help("dip-vae-ii: weight of the off-diagonal covariance penalty", default=10.0)
    dip_lambda_d: float = _help("dip-vae-ii: weight of the diagonal (variance - 1) penalty", default=10.0)
    capacity_gamma: float = _help("capacity: weight gamma of |KL - C|", default=1000.0)
    capacity_max: float = _help("capacity: final capacity C_max in nats per image", default=25.0)
    capacity_steps: int = _help("capacity: steps of the linear increase of C from 0 to C_max", default=100000)

    def __post_init__(self) -> None:
        choice(self.objective, "objective", OBJECTIVES)
        check(self.tc_beta >= 0, "tc_beta", f"must be >= 0, got {self.tc_beta}")
        check(self.factor_gamma >= 0, "factor_gamma", f"must be >= 0, got {self.factor_gamma}")
        check(
            len(self.factor_disc_hidden) >= 1 and min(self.factor_disc_hidden) >= 1,
            "factor_disc_hidden",
            f"must be positive and non-empty: {self.factor_disc_hidden}",
        )
        check(self.factor_disc_lr > 0, "factor_disc_lr", f"must be positive, got {self.factor_disc_lr}")
        check(self.dip_lambda_od >= 0, "dip_lambda_od", f"must be >= 0, got {self.dip_lambda_od}")
        check(self.dip_lambda_d >= 0, "dip_lambda_d", f"must be >= 0, got {self.dip_lambda_d}")
        check(self.capacity_gamma >= 0, "capacity_gamma", f"must be >= 0, got {self.capacity_gamma}")
        check(self.capacity_max >= 0, "capacity_max", f"must be >= 0, got {self.capacity_max}")
        check(self.capacity_steps >= 1, "capacity_steps", f"must be >= 1, got {self.capacity_steps}")
