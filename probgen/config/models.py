"""The networks and likelihoods of every model kind (`probgen fit <kind>`'s model sections)."""

from __future__ import annotations

from dataclasses import dataclass

from probgen.config.base import _help, check, choice


@dataclass
class VAEConfig:
    """The VAE's networks and likelihood (Burgess et al. 2018 conv nets by default)."""

    arch: str = _help("encoder/decoder family: conv or mlp", default="conv")
    latent_dim: int = _help("dimension of z", default=10)
    conv_channels: tuple[int, ...] = _help("channels of the conv layers (k4 s2 each)", default=(32, 32, 32, 32))
    kernel_size: int = _help("conv kernel size (stride 2, 'same'-style padding)", default=4)
    hidden_dims: tuple[int, ...] = _help("widths of the fully connected layers", default=(256, 256))
    activation: str = _help("relu, leaky_relu or elu", default="relu")
    negative_slope: float = _help("slope of leaky_relu", default=0.01)
    batch_norm: bool = _help("batch-norm after each conv layer", default=False)
    dropout: float = _help("dropout probability (0 = off)", default=0.0)
    dropout_in: str = _help("where dropout acts: encoder or both", default="encoder")
    likelihood: str = _help(
        "auto (bernoulli for binary data, else gaussian), bernoulli, gaussian (fixed --obs-scale) or gaussian-learned",
        default="auto",
    )
    obs_scale: float = _help("std of the Gaussian likelihood, in pixel units of [0, 1]", default=0.1)

    def __post_init__(self) -> None:
        choice(self.arch, "arch", ("conv", "mlp"))
        check(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")
        check(len(self.conv_channels) >= 1, "conv_channels", "needs at least one layer")
        check(all(c >= 1 for c in self.conv_channels), "conv_channels", f"must be positive: {self.conv_channels}")
        check(self.kernel_size in (3, 4, 5), "kernel_size", f"must be 3, 4 or 5, got {self.kernel_size}")
        check(all(h >= 1 for h in self.hidden_dims), "hidden_dims", f"must be positive: {self.hidden_dims}")
        choice(self.activation, "activation", ("relu", "leaky_relu", "elu"))
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        choice(self.dropout_in, "dropout_in", ("encoder", "both"))
        choice(self.likelihood, "likelihood", ("auto", "bernoulli", "gaussian", "gaussian-learned"))
        check(self.obs_scale > 0, "obs_scale", f"must be positive, got {self.obs_scale}")


@dataclass
class AEConfig:
    """The plain autoencoder baseline (`probgen fit ae`): the VAE's networks, no sampling, no KL."""

    bottleneck: bool = _help(
        "a linear bottleneck of --latent-dim units between the conv stacks (default: none, purely convolutional)",
        default=False,
    )


@dataclass
class CVAEConfig:
    """The conditional VAE's labels (`probgen fit cvae`)."""

    label_factor: str = _help(
        "for datasets without labels, the generative factor used as the class (dSprites: shape)", default="shape"
    )
    num_classes: int | None = _help("number of classes (default: 1 + the largest training label)", default=None)

    def __post_init__(self) -> None:
        check(bool(self.label_factor), "label_factor", "must not be empty")
        check(self.num_classes is None or self.num_classes >= 2, "num_classes", f"must be >= 2, got {self.num_classes}")


@dataclass
class VAEGANConfig:
    """The discriminator of the VAE-GAN (`probgen fit vaegan`, Larsen et al. 2016)."""

    gan_weight: float = _help("weight of the adversarial loss added to -ELBO (both in nats per image)", default=1.0)
    disc_channels: tuple[int, ...] | None = _help(
        "channels of the discriminator's stride-2 conv layers (default: --conv-channels)", default=None
    )
    disc_lr: float = _help("Adam learning rate of the discriminator", default=2e-4)

    def __post_init__(self) -> None:
        check(self.gan_weight >= 0, "gan_weight", f"must be >= 0, got {self.gan_weight}")
        check(
            self.disc_channels is None or (len(self.disc_channels) >= 1 and min(self.disc_channels) >= 1),
            "disc_channels",
            f"must be positive and non-empty: {self.disc_channels}",
        )
        check(self.disc_lr > 0, "disc_lr", f"must be positive, got {self.disc_lr}")


@dataclass
class GANConfig:
    """The DCGAN's networks (Radford et al. 2015); the image size comes from the data (16 to 256 px)."""

    latent_dim: int = _help("dimension of the generator's noise z", default=100)
    latent_dist: str = _help("noise z: normal (N(0, I)), uniform (U[-1, 1]) or uniform01 (U[0, 1])", default="normal")
    g_channels: int = _help("generator width: channels of its last hidden layer (ngf)", default=64)
    d_channels: int = _help("discriminator width: channels of its first layer (ndf)", default=64)
    g_norm: str = _help("generator normalisation: batch, instance or none", default="batch")
    d_norm: str = _help("discriminator normalisation: batch, instance or none", default="batch")
    init: str = _help("weight init: normal (N(0, 0.02), Radford et al.) or he (Kaiming normal)", default="normal")
    output: str = _help("generator output: tanh (images in [-1, 1]) or sigmoid (images in [0, 1])", default="tanh")
    leaky_slope: float = _help("negative slope of the discriminator's LeakyReLU", default=0.2)

    def __post_init__(self) -> None:
        check(self.latent_dim >= 1, "latent_dim", f"must be >= 1, got {self.latent_dim}")
        choice(self.latent_dist, "latent_dist", ("normal", "uniform", "uniform01"))
        check(self.g_channels >= 1, "g_channels", f"must be >= 1, got {self.g_channels}")
        check(self.d_channels >= 1, "d_channels", f"must be >= 1, got {self.d_channels}")
        choice(self.g_norm, "g_norm", ("batch", "instance", "none"))
        choice(self.d_norm, "d_norm", ("batch", "instance", "none"))
        choice(self.init, "init", ("normal", "he"))
        choice(self.output, "output", ("tanh", "sigmoid"))
        check(0.0 <= self.leaky_slope < 1.0, "leaky_slope", f"must be in [0, 1), got {self.leaky_slope}")
