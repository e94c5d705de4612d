"""probgen.models: nn.Modules and Pyro model/guide pairs of every kind, and the registry of kinds
(:mod:`probgen.models.registry`: kind -> fit config, checkpoint loader, sampler, latent view).

Names load lazily.
"""

from probgen.utils.lazy import lazy_exports

_EXPORTS = {
    "KINDS": "registry",
    "ModelKind": "registry",
    "LoadedModel": "registry",
    "LatentModel": "registry",
    "load_model": "registry",
    "model_kind": "registry",
    "kind_of_config": "registry",
    "VAE": "vae",
    "load_vae": "vae",
    "build_vae": "vae",
    "DiscretisedNormal": "discretised",
    "discretised_model": "discretised",
    "CVAE": "cvae",
    "load_cvae": "cvae",
    "Autoencoder": "autoencoder",
    "load_autoencoder": "autoencoder",
    "Generator": "dcgan",
    "Discriminator": "dcgan",
    "load_generator": "dcgan",
    "build_gan": "dcgan",
    "sample_latent": "dcgan",
    "Encoder": "nets",
    "Decoder": "nets",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
