"""End to end against exact answers: `probgen loglik` on a latent-2 VAE trained here, checked per point
against 2-D grid quadrature of the same model (issue 12, item 8)."""

import math

import pytest
import torch

from probgen.config import DataConfig, FitVAEConfig, LoglikConfig, RunConfig, TrainConfig, VAEConfig
from probgen.data import load_dataset, to_unit
from probgen.inference.loglik.quadrature import grid_log_px
from probgen.inference.mcmc.potential import from_pyro_model
from probgen.models.vae import load_vae
from probgen.pipelines.loglik import chosen_points, loglik, pixel_model
from probgen.training.trainers.vae import fit_vae
from probgen.utils.io import read_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread")
POINTS = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A latent-2 MLP VAE, 16 px procedural dSprites, 200 steps; and the exact log p(x) of its first test points."""
    root = tmp_path_factory.mktemp("latent2")
    cfg = FitVAEConfig(
        data=DataConfig(dataset="dsprites", limit=640, image_size=16, data_root=str(root / "no-data")),
        model=VAEConfig(arch="mlp", hidden_dims=(64,), latent_dim=2),
        train=TrainConfig(epochs=100, max_steps=200, batch_size=32, lr=3e-3, seed=0),
        run=RunConfig(out=str(root / "run"), progress=False),
    )
    ckpt = fit_vae(cfg) / "checkpoint.pt"
    vae, fit_cfg = load_vae(ckpt)
    vae.requires_grad_(False)
    split = load_dataset(fit_cfg.data).split("test")
    x = to_unit(split.images[chosen_points(len(split), POINTS)])  # the points loglik picks
    q = grid_log_px(from_pyro_model(pixel_model(LoglikConfig(), vae), x), coarse=121, fine=201, chunk=1024)
    assert (q["error"] < 0.01).all()
    return ckpt, q["log_px"]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_estimates_agree_with_quadrature(trained, tmp_path, seed):
    ckpt, exact = trained
    cfg = LoglikConfig(
        ckpt=str(ckpt), num_data=POINTS, method="all", chains=4, warmup=150, samples=200, ais_steps=300,
        iwae_samples=2000, leapfrog_steps=5, seed=seed, out=str(tmp_path / "ll"), progress=False, device="cpu",
    )  # fmt: skip
    report = loglik(cfg)
    rows = read_csv(tmp_path / "ll" / "loglik.csv")
    flagged = {}
    for m in ("elbo", "iwae", "appendix-d", "ais"):
        est = torch.tensor([float(r[f"log_px_{m}"]) for r in rows], dtype=torch.float64)
        se = torch.tensor([float(r[f"se_{m}"] or "nan") for r in rows], dtype=torch.float64).nan_to_num(0.0)
        ok = torch.tensor([not r[f"flag_{m}"] for r in rows])
        flagged[m] = int((~ok).sum())
        err = est - exact
        if m in ("appendix-d", "ais"):  # unflagged: within 0.5 nats of the exact value
            assert (err[ok].abs() <= 0.5).all(), (m, err, ok)
        if m in ("elbo", "iwae", "ais"):  # lower bounds, one-sided: never above the truth beyond noise
            assert (err[ok] <= 3 * se[ok] + 0.1).all(), (m, err, se)
    assert report["results"]["elbo"]["log_px_mean"] <= report["results"]["iwae"]["log_px_mean"]
    assert flagged["appendix-d"] + flagged["ais"] < 2 * POINTS  # not everything flagged away
    assert math.isfinite(report["results"]["ais"]["log_px_mean"])


@pytest.mark.parametrize("seed", [0, 1])
def test_ais_from_the_laplace_fit_agrees_with_quadrature_per_point(trained, tmp_path, seed):
    ckpt, exact = trained
    cfg = LoglikConfig(
        ckpt=str(ckpt), num_data=POINTS, method="ais-laplace", chains=8, ais_steps=100, leapfrog_steps=5,
        seed=seed, out=str(tmp_path / "ll"), progress=False, device="cpu",
    )  # fmt: skip
    loglik(cfg)
    rows = read_csv(tmp_path / "ll" / "loglik.csv")
    est = torch.tensor([float(r["log_px_ais-laplace"]) for r in rows], dtype=torch.float64)
    se = torch.tensor([float(r["se_ais-laplace"]) for r in rows], dtype=torch.float64)
    ok = torch.tensor([not r["flag_ais-laplace"] for r in rows])
    err = est - exact
    assert (err <= 3 * se + 0.05).all(), (err, se)  # a lower bound, flagged or not
    assert (err[ok].abs() <= 3 * se[ok] + 0.1).all(), (err, se, ok)  # unflagged: within its error bar
    assert int(ok.sum()) >= POINTS // 2, [r["flag_ais-laplace"] for r in rows]
