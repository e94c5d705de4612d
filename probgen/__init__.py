"""probgen: deep generative models of images with Pyro and PyTorch.

VAEs as Pyro model/guide pairs trained by SVI, marginal log-likelihoods by HMC + importance
sampling (Kingma & Welling 2013, App. D), IWAE and AIS, DCGANs, and one FID/IS/KID harness.
"""

__version__ = "0.1.0"
