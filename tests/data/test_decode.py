"""Decoding single files: crops, the JPEG draft path, EXIF orientation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from probgen.data.decode import Geometry, check_memory, decode_file, decode_files
from probgen.errors import UserError


def test_geometry_crop_sides():
    assert Geometry(64).crop_side(178, 218) is None
    assert Geometry(64, "square").crop_side(178, 218) == 178
    assert Geometry(64, 148).crop_side(178, 218) == 148
    assert Geometry(64, 148).crop_side(100, 218) == 100


def test_large_jpeg_draft_matches_full_decode(tmp_path):
    y, x = np.mgrid[0:900, 0:1200]
    arr = ((x / 1200 * 255 + y / 900 * 64) % 256).astype(np.uint8)  # smooth ramp
    Image.fromarray(arr, "L").save(tmp_path / "big.jpg", quality=95)
    Image.fromarray(arr, "L").save(tmp_path / "big.png")  # same pixels, no draft for PNG
    fast = decode_file(tmp_path / "big.jpg", Geometry(64)).float()
    full = decode_file(tmp_path / "big.png", Geometry(64)).float()
    assert fast.shape == full.shape == (1, 64, 64)
    assert (fast - full).abs().mean() < 2.0  # DCT-domain downscaling is a good low-pass


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image is shown rotated 90 degrees clockwise
    img.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    t = decode_file(tmp_path / "rot.jpg", Geometry(8))
    # after rotating clockwise, the white half is on top
    assert t[:, :3].float().mean() > 240 and t[:, 5:].float().mean() < 15


def test_decode_files_order_and_skip(tmp_path):
    for i in range(3):
        Image.new("L", (8, 8), 50 * i).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths = [tmp_path / "0.png", tmp_path / "bad.png", tmp_path / "1.png", tmp_path / "2.png"]
    with pytest.raises(UserError, match=r"bad\.png"):
        decode_files(paths, Geometry(8))
    out, bad = decode_files(paths, Geometry(8), skip_bad=True)
    assert out[1] is None and [p for p, _ in bad] == [tmp_path / "bad.png"]
    assert [int(t[0, 0, 0]) for t in out if t is not None] == [0, 50, 100]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match="gone.jpg"):
        decode_files([tmp_path / "gone.jpg"], Geometry(8))


def test_check_memory(monkeypatch):
    monkeypatch.setattr("probgen.data.decode.available_memory", lambda: 10 * 2**30)
    check_memory("x", 1000, (3, 64, 64))
    with pytest.raises(UserError, match=r"'x': 1000000 images of \(3, 64, 64\) need 11.4 GiB"):
        check_memory("x", 1_000_000, (3, 64, 64))


def test_output_dtype_and_range(tmp_path):
    Image.new("RGB", (5, 7), (255, 0, 128)).save(tmp_path / "a.png")
    t = decode_file(tmp_path / "a.png", Geometry(9, "square"))
    assert t.dtype == torch.uint8 and t.shape == (3, 9, 9)
    assert t[:, 4, 4].tolist() == [255, 0, 128]


def test_process_pool_matches_serial(tmp_path, monkeypatch):
    for i in range(5):
        Image.new("RGB", (20 + i, 15), (i * 40, 10, 200)).save(tmp_path / f"{i}.jpg")
    (tmp_path / "5.jpg").write_bytes(b"not a jpeg")
    paths = sorted(tmp_path.glob("*.jpg"))
    serial, bad_serial = decode_files(paths, Geometry(8), skip_bad=True)
    monkeypatch.setattr("probgen.data.decode.PARALLEL_MIN", 2)
    monkeypatch.setattr("probgen.data.decode._CHUNK", 2)
    monkeypatch.setattr("probgen.data.decode._workers", lambda: 2)
    pooled, bad_pooled = decode_files(paths, Geometry(8), skip_bad=True)
    assert [p for p, _ in bad_pooled] == [p for p, _ in bad_serial] == [tmp_path / "5.jpg"]
    assert all(torch.equal(a, b) for a, b in zip(serial[:5], pooled[:5])) and pooled[5] is None
    with pytest.raises(UserError, match=r"5\.jpg"):
        decode_files(paths, Geometry(8))
