"""Decode image files into uint8 tensors: each file once, in parallel, with errors that name the file.

PIL decodes (as torchvision's own dataset classes do: ``torchvision.io`` returns palette indices for
palette PNGs and cannot read BMP or TIFF); torchvision crops and resizes. Every image comes out
as (C, M, M) uint8 with C = 1 for grey-level sources and C = 3 for colour ones:

- palette, CMYK and other colour modes become RGB; ``1`` (bilevel) and 16-bit grey become 8-bit grey;
- transparent pixels (RGBA, LA, palette or grey with a transparency key) are composited onto white;
- the EXIF orientation is applied, so that images look as they do in a viewer;
- large JPEGs are decoded at a reduced DCT scale (PIL's ``draft``) that still keeps at least M pixels
  across the cropped region, then resized with antialiasing.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps
from torchvision.datasets.folder import IMG_EXTENSIONS

from probgen.errors import UserError
from probgen.utils.progress import progress as progress_bar

__all__ = ["IMG_EXTENSIONS", "Geometry", "decode_file", "decode_files", "check_memory"]

_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


@dataclass(frozen=True)
class Geometry:
    """How a decoded image becomes M x M.

    ``crop``: ``"none"`` stretches the whole image to M x M (aspect ratio not kept); ``"square"`` first
    takes the largest centred square; an int k first takes the centred k x k square (clipped to the image).
    """

    size: int
    crop: str | int = "none"

    def crop_side(self, w: int, h: int) -> int | None:
        """Side of the centred square crop of a w x h image, in its pixels; None = no crop."""
        if self.crop == "none":
            return None
        if self.crop == "square":
            return min(w, h)
        return min(int(self.crop), w, h)


def _to_grey_or_rgb(img: Image.Image) -> Image.Image:
    """An ``L`` or ``RGB`` image; alpha composited onto white, 16-bit grey scaled to 8 bits."""
    mode = img.mode
    grey = mode in _GREY_MODES
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # PIL's convert("L") clips 16-bit values at 255 instead of scaling them
        arr = np.asarray(img).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8), mode="L")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("L" if grey else "RGB")


def decode_file(path: str | os.PathLike[str], geometry: Geometry) -> torch.Tensor:
    """Decode one image file to uint8 (C, M, M), C = 1 (grey source) or 3 (colour source).

    Raises the decoder's own exception (OSError, ValueError, ...) on an unreadable file.
    """
    m = geometry.size
    with Image.open(path) as img:
        w, h = img.size
        if img.format == "JPEG":
            side = geometry.crop_side(w, h) or min(w, h)
            scale = m / max(side, 1)
            if scale < 0.5:  # the decoder keeps >= the requested size, so >= M px across the crop
                img.draft(img.mode, (math.ceil(w * scale), math.ceil(h * scale)))
        img = ImageOps.exif_transpose(img)
        img = _to_grey_or_rgb(img)
    t = TF.pil_to_tensor(img)  # (C, h', w') uint8; smaller than (h, w) after a draft, maybe transposed
    side = geometry.crop_side(w, h)
    if side is not None:
        scale = max(t.shape[1:]) / max(w, h)
        side = min(max(1, round(side * scale)), t.shape[1], t.shape[2])
        t = TF.center_crop(t, [side, side])
    return TF.resize(t, [m, m], antialias=True)


def _decode_or_error(path: Path, geometry: Geometry) -> torch.Tensor | str:
    try:
        return decode_file(path, geometry)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # PIL raises UnidentifiedImageError (an OSError) for unknown data, OSError for truncated
        # files, SyntaxError from some plugins on malformed headers.
        return f"{type(exc).__name__}: {exc}"


# Below this many files a process pool costs more to start than it saves.
PARALLEL_MIN = 1000
_CHUNK = 128


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus))


def _init_worker() -> None:
    torch.set_num_threads(1)  # one image per core; torch's own threads would oversubscribe


def _decode_chunk(paths: Sequence[Path], geometry: Geometry) -> list[np.ndarray | str]:
    """Decode a chunk of files (in a worker process): uint8 arrays (C, M, M) or error strings."""
    out: list[np.ndarray | str] = []
    for p in paths:
        res = _decode_or_error(p, geometry)
        out.append(res if isinstance(res, str) else res.numpy())
    return out


def decode_files(
    paths: Sequence[Path],
    geometry: Geometry,
    skip_bad: bool = False,
    progress: bool = True,
    desc: str = "decoding",
) -> tuple[list[torch.Tensor | None], list[tuple[Path, str]]]:
    """Decode many files; with >= ``PARALLEL_MIN`` files, in a pool of worker processes (decoding
    small images is mostly Python work that holds the GIL, so threads do not help).

    Returns the decoded images in input order (``None`` where a file was skipped) and the
    (path, reason) of every unreadable file. Without ``skip_bad``, the first unreadable file is a
    :class:`UserError` naming it.
    """
    out: list[torch.Tensor | None] = []
    bad: list[tuple[Path, str]] = []
    chunks = [list(paths[i : i + _CHUNK]) for i in range(0, len(paths), _CHUNK)]
    workers = _workers()
    pool = None
    if workers > 1 and len(paths) >= PARALLEL_MIN:
        # fork, as torch's DataLoader does on Linux: workers start at once, without re-importing torch
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker)
        results = pool.map(_decode_chunk, chunks, [geometry] * len(chunks))
    else:
        results = (_decode_chunk(c, geometry) for c in chunks)
    bar = progress_bar(len(paths), desc=desc, enabled=progress and len(paths) > 200, unit="img")
    try:
        with bar:
            for chunk, decoded in zip(chunks, results):
                bar.update(len(chunk))
                for path, res in zip(chunk, decoded):
                    if isinstance(res, str):
                        if not skip_bad:
                            msg = f"cannot read image {path}: {res} (pass --skip-bad to skip unreadable files)"
                            raise UserError(msg)
                        bad.append((path, res))
                        out.append(None)
                    else:
                        out.append(torch.from_numpy(res))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)  # an early error does not wait for the rest
    return out, bad


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(name: str, n: int, shape: tuple[int, int, int]) -> None:
    """UserError if ``n`` uint8 images of ``shape`` would take more than half the available memory."""
    need = n * math.prod(shape)
    avail = available_memory()
    if avail is not None and need > avail // 2:
        raise UserError(
            f"dataset {name!r}: {n} images of {shape} need {need / 2**30:.1f} GiB in memory, more than half of "
            f"the {avail / 2**30:.1f} GiB available; use a smaller --image-size or --limit"
        )
