"""`probgen plot`: every figure from tiny checkpoints; clear errors for impossible requests."""

import pytest
import torch

from probgen.cli import main
from probgen.config import FitCVAEConfig, FitVAEConfig, PlotConfig
from probgen.errors import UserError
from probgen.pipelines.plot import plot_checkpoint
from probgen.plots import save_reconstructions
from probgen.training.trainers.cvae import fit_cvae
from probgen.training.trainers.vae import fit_vae
from tests.factories import tiny_latent_config

FAST = ["--num-points", "60", "--device", "cpu"]


@pytest.mark.parametrize("figure", ["traversals", "latents", "reconstructions"])
def test_each_figure_from_the_cli(figure, tiny_vae_ckpt, tmp_path):
    out = tmp_path / f"{figure}.png"
    assert main(["plot", figure, "--ckpt", str(tiny_vae_ckpt), "--out", str(out), *FAST]) == 0
    assert out.stat().st_size > 1000
    assert main(["plot", figure, "--ckpt", str(tiny_vae_ckpt), "--out", str(out), *FAST]) == 2  # exists


def test_manifold_needs_a_2d_latent(tiny_vae_ckpt, tmp_path):
    with pytest.raises(UserError, match="latent_dim == 2, this model has 3"):
        plot_checkpoint("manifold", tiny_vae_ckpt, PlotConfig(device="cpu"), out=tmp_path / "m.png")
    run = fit_vae(tiny_latent_config(FitVAEConfig, tmp_path / "vae2", 2))
    path = plot_checkpoint("manifold", run, PlotConfig(grid=5, device="cpu"))
    assert path == run / "manifold.png" and path.stat().st_size > 1000
    # the 2-D latents plot uses the two dimensions themselves
    assert plot_checkpoint("latents", run, PlotConfig(num_points=40, device="cpu")).name == "latents.png"


def test_conditional_vae_figures_decode_the_chosen_class(tmp_path):
    cfg = tiny_latent_config(FitCVAEConfig, tmp_path / "cvae", 2)
    run = fit_cvae(cfg)
    for figure in ("manifold", "traversals", "latents", "reconstructions"):
        plot_checkpoint(figure, run, PlotConfig(grid=4, steps=3, num_points=40, label=2, device="cpu"))
    written = {p.name for p in run.iterdir()}
    assert {"manifold.png", "traversals.png", "latents.png", "reconstructions_test.png"} <= written
    with pytest.raises(UserError, match="--label: must be < 3"):
        plot_checkpoint("manifold", run, PlotConfig(label=3, device="cpu"), out=tmp_path / "x.png")


def test_bad_requests_are_user_errors(tiny_vae_ckpt, tmp_path, capsys):
    with pytest.raises(UserError, match="--dims: the model has 3"):
        plot_checkpoint("traversals", tiny_vae_ckpt, PlotConfig(dims=(0, 5), device="cpu"), out=tmp_path / "t.png")
    with pytest.raises(UserError, match="--index"):
        plot_checkpoint("traversals", tiny_vae_ckpt, PlotConfig(index=10**6, device="cpu"), out=tmp_path / "t.png")
    with pytest.raises(UserError, match=r"\.png"):
        plot_checkpoint("latents", tiny_vae_ckpt, PlotConfig(device="cpu"), out=tmp_path / "t.jpg")
    assert main(["plot", "latents", "--ckpt", str(tiny_vae_ckpt), "--projection", "tsne"]) == 2
    assert "--projection" in capsys.readouterr().err


def test_reconstruction_grid_keeps_originals_above_their_reconstructions(tmp_path):
    import numpy as np
    from PIL import Image

    x = torch.zeros(5, 1, 4, 4)
    r = torch.ones(5, 1, 4, 4)
    path = save_reconstructions(x, r, tmp_path / "r.png", nrow=3)
    img = torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255)  # 4 rows of 3
    cells = img[2::6, 2::6][:4, :3]  # the top-left pixel of each cell (padding 2, cell 4)
    want = torch.tensor([[0, 0, 0], [1, 1, 1], [0, 0, 0.5], [1, 1, 0.5]])
    torch.testing.assert_close(cells, want, atol=0.01, rtol=0)


def test_a_comma_list_draws_each_figure_into_the_run_directory(tiny_vae_ckpt, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_vae_ckpt, run / "checkpoint.pt")
    assert main(["plot", "traversals,latents", "--ckpt", str(run), *FAST]) == 0
    assert (run / "traversals.png").stat().st_size > 1000 and (run / "latents.png").stat().st_size > 1000
    assert main(["plot", "traversals,latents", "--ckpt", str(run), "--out", str(tmp_path / "x.png"), *FAST]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["plot", "traversals,bogus", "--ckpt", str(run), *FAST]) == 2
    assert "bogus" in capsys.readouterr().err
