"""Reading what TensorBoard wrote (not a test module): event files and PNGs back to numbers and arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def read_events(log_dir):
    """Every scalar (tag -> [(step, value)]) and image (tag -> [(step, (H, W, C) uint8)]) under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0}).Reload()  # 0: keep all
    tags = ea.Tags()
    scalars = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags["scalars"]}
    images = {t: [(e.step, read_png(io.BytesIO(e.encoded_image_string))) for e in ea.Images(t)] for t in tags["images"]}
    return scalars, {t: v for t, v in images.items() if v}  # a purged tag stays listed, empty


def read_png(file):
    return np.asarray(Image.open(file))
