"""`probgen fit ae | cvae | vaegan`: training improves the objective, resume is exact, `probgen sample` works."""

import pytest
import torch

from probgen.checkpoint import load_checkpoint
from probgen.cli import main
from probgen.errors import UserError
from probgen.models.cvae import load_cvae
from probgen.models.vae import load_vae
from probgen.pipelines.sample import load_sampler, sample_images
from probgen.training.trainers.ae import fit_ae
from probgen.training.trainers.cvae import fit_cvae
from probgen.training.trainers.vaegan import fit_vaegan
from probgen.utils.io import read_csv
from tests.factories import ZOO_FLAGS, tiny_zoo_config

FIT = {"ae": fit_ae, "cvae": fit_cvae, "vaegan": fit_vaegan}
OBJECTIVE = {"ae": "loss", "cvae": "loss", "vaegan": "loss"}  # per-image training objective (lower is better)


@pytest.mark.parametrize("kind", ["ae", "cvae", "vaegan"])
def test_fit_improves_and_resume_is_bitwise_equal(kind, tmp_path):
    # 9 steps per epoch: stop mid-epoch 2 (step 11) with a checkpoint at 8, then resume to 18.
    full = FIT[kind](tiny_zoo_config(kind, tmp_path / "full", epochs=2, max_steps=18, checkpoint_every=4))
    FIT[kind](tiny_zoo_config(kind, tmp_path / "part", epochs=2, max_steps=11, checkpoint_every=4))
    cfg = tiny_zoo_config(kind, tmp_path / "part", epochs=2, max_steps=18, checkpoint_every=4)
    cfg.run.resume = True
    part = FIT[kind](cfg)
    a, b = load_checkpoint(full / "checkpoint.pt", kind=kind), load_checkpoint(part / "checkpoint.pt", kind=kind)
    assert a["step"] == b["step"] == 18
    modules = {"ae": ["model"], "cvae": ["model"], "vaegan": ["model", "discriminator"]}[kind]
    for m in modules:
        for k, v in a["state"][m].items():
            assert torch.equal(v, b["state"][m][k]), (m, k)
    rows = read_csv(full / "losses.csv")
    assert rows == read_csv(part / "losses.csv")
    train = [float(r[OBJECTIVE[kind]]) for r in rows if r["split"] == "train"]
    assert len(train) == 2 and train[-1] < train[0] - 3  # nats per 16x16 image
    assert {"samples.png", "reconstructions.png", "loss_curves.png", "metrics.json", "config.json"} <= {
        p.name for p in full.iterdir()
    }


def test_cli_fit_and_sample_each_kind(tmp_path, capsys):
    for kind, extra in [("ae", ["--bottleneck"]), ("cvae", []), ("vaegan", ["--gan-weight", "2", "--disc-lr", "1e-3"])]:
        out = tmp_path / kind
        assert main(["fit", kind, *ZOO_FLAGS, *extra, "--max-steps", "3", "--out", str(out)]) == 0, kind
        png = tmp_path / f"{kind}.png"
        assert main(["sample", "--ckpt", str(out), "-n", "6", "--nrow", "3", "--out", str(png)]) == 0, kind
        assert png.stat().st_size > 0
    assert load_checkpoint(tmp_path / "ae" / "checkpoint.pt")["config"]["ae"]["bottleneck"] is True
    assert load_checkpoint(tmp_path / "vaegan" / "checkpoint.pt")["config"]["gan"]["gan_weight"] == 2.0
    # a VAE-GAN checkpoint is also a VAE for every VAE command
    vae, cfg = load_vae(tmp_path / "vaegan" / "checkpoint.pt")
    assert vae.latent_dim == 3 and cfg.gan.disc_lr == 1e-3
    # fit ae has no beta flags
    assert main(["fit", "ae", *ZOO_FLAGS, "--beta", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--beta" in capsys.readouterr().err


def test_cvae_samples_cycle_through_the_classes(tmp_path):
    out = fit_cvae(tiny_zoo_config("cvae", tmp_path / "run", max_steps=2))
    cvae, cfg = load_cvae(out / "checkpoint.pt")
    assert cfg.cvae.num_classes == 3  # dSprites shapes
    sampler, _ = load_sampler(out / "checkpoint.pt", torch.device("cpu"))
    got = sample_images(sampler, 7, seed=5, device=torch.device("cpu"))
    gen = torch.Generator().manual_seed(5)
    want = cvae.sample(7, generator=gen, labels=torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    torch.testing.assert_close(got, want)
    other = cvae.sample(7, generator=torch.Generator().manual_seed(5), labels=torch.full((7,), 2))
    assert not torch.allclose(got[:2], other[:2])  # the label changes the image


def test_user_errors(tmp_path):
    cfg = tiny_zoo_config("cvae", tmp_path / "a", max_steps=1)
    cfg.cvae.label_factor = "colour"
    with pytest.raises(UserError, match="--label-factor: .* no factor 'colour'"):
        fit_cvae(cfg)
    cfg = tiny_zoo_config("ae", tmp_path / "b", max_steps=1)
    cfg.model.arch = "mlp"
    with pytest.raises(UserError, match="--no-bottleneck"):
        fit_ae(cfg)
    unfinished = fit_ae(tiny_zoo_config("ae", tmp_path / "c", max_steps=1))
    ckpt = load_checkpoint(unfinished / "checkpoint.pt")
    assert bool(ckpt["state"]["model"]["code_fitted"])  # fitted at the end of the run
