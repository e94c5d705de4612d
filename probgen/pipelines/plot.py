"""`probgen plot traversals|manifold|latents|reconstructions --ckpt PATH`: latent-space figures.

Reads VAE, VAE-GAN and conditional-VAE checkpoints (reconstructions also autoencoder ones) and the
checkpoint's dataset (its own split and seed). Figures (functions in :mod:`probgen.plots`):

- ``traversals``: each row varies one latent dimension over [-span, span] while the others keep the
  encoder mean of one image; by default the 10 dimensions of largest mean KL(q(z_d|x) || p(z_d)).
- ``manifold``: decoded images on a grid of Gaussian quantiles (5%..95%) of a 2-D latent space
  (Kingma & Welling 2013, Fig. 4); needs latent_dim == 2.
- ``latents``: encoder means of the split coloured by label (dSprites: the shape factor), with 1-sd
  ellipses of q(z|x); for latent_dim > 2 the means are projected on their first two principal
  components (``--projection pca``, the ellipses projected alike) or the first two dimensions.
- ``reconstructions``: a fixed batch of the split (a seeded draw that shows every label or dSprites
  shape, :meth:`ImageData.display_indices`), rows of originals each followed by their
  reconstructions (decoded encoder means).

Outputs default to ``<run dir>/{traversals,manifold,latents}.png`` and ``reconstructions_<split>.png``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from probgen import plots
from probgen.config import FIGURES, PlotConfig
from probgen.data import ImageData, Split, load_dataset, to_unit
from probgen.errors import UserError
from probgen.models.cvae import split_labels
from probgen.models.registry import kinds_where, load_model
from probgen.utils.device import resolve_device

log = logging.getLogger("probgen")


def _labels(data: ImageData, split: Split, label_factor: str) -> torch.Tensor | None:
    if split.labels is not None:
        return split.labels.long()
    if split.factor_classes is not None and label_factor in data.factor_names:
        return split.factor_classes[:, data.factor_names.index(label_factor)].long()
    return None


class _Figures:
    """One checkpoint, its data split and the figure builders."""

    def __init__(self, ckpt_path: str | Path, cfg: PlotConfig, what: str):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        kinds = kinds_where(lambda k: what in k.figures)  # the registry says which kinds draw ``what``
        self.m = load_model(ckpt_path, self.device, kinds=kinds, need=f"a model with {what} ({', '.join(kinds)})")
        self.m = self.m.latent()
        data_cfg = self.m.config.data
        if cfg.data_root is not None:
            data_cfg = dataclasses.replace(data_cfg, data_root=cfg.data_root)
        self._data_cfg = data_cfg
        self._data: ImageData | None = None

    @property
    def data(self) -> ImageData:
        if self._data is None:
            self._data = load_dataset(self._data_cfg)
        return self._data

    def _split(self) -> tuple[Split, torch.Tensor | None]:
        split = self.data.split(self.cfg.split)
        if self.m.label_factor is not None:  # a conditional model: its own labels
            return split, split_labels(self.data, split, self.m.label_factor)
        return split, _labels(self.data, split, self.cfg.label_factor)

    def _need_latent(self, what: str) -> None:
        if self.m.encode is None:
            spaces = ", ".join(kinds_where(lambda k: k.latent_space))
            raise UserError(f"--ckpt: {what} needs a model with a latent space ({spaces}), not {self.m.kind}")

    def _label_tensor(self, n: int) -> torch.Tensor | None:
        if self.m.num_classes is None:
            return None
        if self.cfg.label >= self.m.num_classes:
            raise UserError(f"--label: must be < {self.m.num_classes} (the model's classes), got {self.cfg.label}")
        return torch.full((n,), self.cfg.label, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def _encode(self, images: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        locs, scales = [], []
        for i in range(0, len(images), 512):
            y = None if labels is None else labels[i : i + 512].to(self.device)
            loc, scale = self.m.encode(to_unit(images[i : i + 512].to(self.device)), y)
            locs.append(loc.cpu())
            scales.append(scale.cpu())
        return torch.cat(locs), torch.cat(scales)

    # --- the figures ----------------------------------------------------------------------------

    @torch.no_grad()
    def traversals(self, out: Path) -> Path:
        self._need_latent("traversals")
        c = self.cfg
        split, labels = self._split()
        if c.index >= len(split):
            raise UserError(f"--index: split {c.split!r} has {len(split)} images, got {c.index}")
        d = self.m.latent_dim
        n = min(len(split), 500)
        loc, scale = self._encode(split.images[:n], None if labels is None else labels[:n])
        kl = (0.5 * (loc**2 + scale**2 - 1) - scale.log()).mean(0)  # (D,) mean KL per dimension, nats
        if c.dims is None:
            dims = torch.argsort(kl, descending=True)[: min(d, 10)].tolist()
        else:
            bad = [k for k in c.dims if k >= d]
            if bad:
                raise UserError(f"--dims: the model has {d} latent dimensions (0..{d - 1}), got {bad}")
            dims = list(c.dims)
        if c.index < n:
            start = loc[c.index]
        else:
            y = None if labels is None else labels[c.index : c.index + 1]
            start = self._encode(split.images[c.index : c.index + 1], y)[0][0]
        values = torch.linspace(-c.span, c.span, c.steps)
        z = start.repeat(len(dims), c.steps, 1)  # (rows, S, D)
        for r, k in enumerate(dims):
            z[r, :, k] = values
        flat = z.reshape(-1, d).to(self.device)
        images = self.m.decode(flat, self._label_tensor(len(flat))).cpu()
        images = images.reshape(len(dims), c.steps, *images.shape[1:])
        return plots.plot_traversals(images, values.tolist(), dims, out, notes=[f"KL {kl[k]:.2f}" for k in dims])

    @torch.no_grad()
    def manifold(self, out: Path) -> Path:
        self._need_latent("manifold")
        if self.m.latent_dim != 2:
            raise UserError(f"--ckpt: the manifold plot needs latent_dim == 2, this model has {self.m.latent_dim}")
        g = self.cfg.grid
        values = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, g))
        z2, z1 = torch.meshgrid(values.flip(0), values, indexing="ij")  # row 0 at the top: largest z2
        flat = torch.stack([z1, z2], -1).reshape(-1, 2).to(self.device)
        images = self.m.decode(flat, self._label_tensor(len(flat))).cpu()
        images = images.reshape(g, g, *images.shape[1:])
        return plots.plot_manifold(images, values.tolist(), values.flip(0).tolist(), out)

    @torch.no_grad()
    def latents(self, out: Path) -> Path:
        self._need_latent("latents")
        c = self.cfg
        d = self.m.latent_dim
        if d < 2:
            raise UserError("--ckpt: the latents plot needs latent_dim >= 2")
        split, labels = self._split()
        n = min(c.num_points, len(split))
        idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n].sort().values
        y = None if labels is None else labels[idx]
        loc, scale = self._encode(split.images[idx], y)
        loc, var = loc.double(), scale.double() ** 2
        if d == 2 or c.projection == "first":
            w = torch.eye(d, dtype=torch.float64)[:2]  # (2, D)
            names = ("z0", "z1")
            how = "first two latent dimensions"
        else:
            centred = loc - loc.mean(0)
            _, s, vh = torch.linalg.svd(centred, full_matrices=False)
            w = vh[:2]
            share = (s**2 / (s**2).sum())[:2].tolist()
            names = (f"PC1 ({share[0]:.0%} of the means' variance)", f"PC2 ({share[1]:.0%})")
            how = f"PCA of the {d}-D encoder means"
        points = loc @ w.T
        cov = torch.einsum("kd,nd,ld->nkl", w, var, w)  # W diag(var) W^T per point
        names_cls: tuple[str, ...] = self.data.class_names if split.labels is not None else ()
        if split.labels is None and y is not None:
            what = self.m.label_factor or c.label_factor
            names_cls = tuple(f"{what} {k}" for k in range(int(y.max()) + 1))
            title = f"{how}; colour: {what}"
        else:
            title = f"{how}; colour: label" if y is not None else how
        return plots.plot_latents(points, cov, y, out, names, names_cls, title=f"{self.data.name} {c.split}: {title}")

    @torch.no_grad()
    def reconstructions(self, out: Path) -> Path:
        c = self.cfg
        split, labels = self._split()
        idx = self.data.display_indices(c.split, min(c.num_images, len(split)))  # seeded; every label / shape
        x = to_unit(split.images[idx].to(self.device))
        y = None if labels is None else labels[idx].to(self.device)
        recon = self.m.reconstruct(x, y)
        return plots.save_reconstructions(x.cpu(), recon.cpu(), out, nrow=c.nrow)


def default_output(ckpt: str | Path, what: str, cfg: PlotConfig) -> Path:
    path = Path(ckpt)
    folder = path if path.is_dir() else path.parent
    name = f"reconstructions_{cfg.split}.png" if what == "reconstructions" else f"{what}.png"
    return folder / name


def plot_checkpoint(
    what: str, ckpt: str | Path, cfg: PlotConfig, out: str | Path | None = None, overwrite: bool = False
) -> Path:
    """Write figure ``what`` (one of :data:`FIGURES`) of checkpoint ``ckpt``; returns the PNG path."""
    if what not in FIGURES:
        raise UserError(f"plot: unknown figure {what!r} (choose from {', '.join(FIGURES)})")
    target = Path(out) if out is not None else default_output(ckpt, what, cfg)
    if target.suffix.lower() != ".png":
        raise UserError(f"--out: must be a .png file, got {target}")
    if target.exists() and not overwrite:
        raise UserError(f"--out: {target} exists; pass --overwrite to replace it")
    path = getattr(_Figures(ckpt, cfg, what), what)(target)
    log.info("wrote %s", path)
    return path
