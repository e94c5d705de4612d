"""`probgen data list` and `probgen data info`, and the one-line errors of bad dataset input."""

from __future__ import annotations

import pytest
from PIL import Image

from probgen.cli import main


def test_data_list_names_every_dataset(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "cifar10", "celeba", "chest-xray", "bitmoji", "folder", "dsprites"):
        assert f"\n{name} " in "\n" + out


def test_data_info_prints_source_splits_range_and_writes_nothing(chest_root, tmp_path, capsys, monkeypatch):
    root, _ = chest_root
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    argv = ["data", "info", "--dataset", "chest-xray", "--data-root", str(root), "--channels", "3"]
    for _ in range(2):  # read-only: run twice, it works twice
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert f"source:   {root / 'chest_xray'}" in out
        assert "splits:   train 7, val 2, test 3 (official)" in out
        assert "uint8 (3, 64, 64)" in out and "[0, 1]" in out and "[-1, 1]" in out
        assert "0=NORMAL, 1=PNEUMONIA" in out and "skipped:  0" in out and "grid:" not in out
    assert list(cwd.iterdir()) == []


def test_data_info_out_writes_grid_never_overwritten(chest_root, tmp_path, capsys):
    root, _ = chest_root
    grid = tmp_path / "sub" / "grid.png"
    argv = ["data", "info", "--dataset", "chest-xray", "--data-root", str(root), "--channels", "3", "--out", str(grid)]
    assert main(argv) == 0
    assert f"grid:     {grid}" in capsys.readouterr().out
    with Image.open(grid) as img:
        assert img.size == (7 * 66 + 2, 66 + 2)  # 7 train images in one row, 2-px padding
    before = grid.read_bytes()
    assert main(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and grid.read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0


def test_data_error_comes_before_out_checks(tmp_path, capsys):
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    for out in (taken, tmp_path / "grid.jpg"):  # an existing --out, a non-PNG --out
        argv = ["data", "info", "--dataset", "mnist", "--data-root", str(tmp_path / "empty"), "--out", str(out)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "dataset 'mnist' not found" in err and "--out" not in err
    assert taken.read_bytes() == b"x"


def test_bad_out_still_refused_with_valid_data(chest_root, tmp_path, capsys):
    root, _ = chest_root
    assert (
        main(["data", "info", "--dataset", "chest-xray", "--data-root", str(root), "--out", str(tmp_path / "g.jpg")])
        == 2
    )
    assert "--out: must be a .png" in capsys.readouterr().err and list(tmp_path.glob("g.*")) == []


def test_data_info_reports_skipped(tmp_path, capsys):
    for i in range(3):
        Image.new("L", (9, 9), 40 * i).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"broken")
    out_png = tmp_path / "grid.png"
    argv = ["data", "info", "--dataset", "folder", "--data-root", str(tmp_path), "--out", str(out_png)]
    assert main([*argv, "--skip-bad", "--test-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "skipped:  1 unreadable file(s)" in out and "uint8 (1, 64, 64), stored values 0..80" in out


@pytest.mark.parametrize("name", ["mnist", "cifar10", "celeba", "chest-xray", "bitmoji"])
def test_missing_dataset_is_one_line_exit_2(name, tmp_path, capsys):
    argv = ["data", "info", "--dataset", name, "--data-root", str(tmp_path / "empty"), "--out", str(tmp_path / "g.png")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith(f"probgen: error: dataset '{name}' not found: tried ")
    assert str(tmp_path / "empty") in err and "Expected layout" in err
    assert not (tmp_path / "g.png").exists()


def test_corrupt_image_is_one_line_naming_file(tmp_path, capsys):
    Image.new("RGB", (9, 9)).save(tmp_path / "ok.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    argv = ["data", "info", "--dataset", "folder", "--data-root", str(tmp_path), "--out", str(tmp_path / "g.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "broken.jpg" in err and "--skip-bad" in err


def test_empty_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    argv = ["fit", "vae", "--dataset", "folder", "--data-root", str(tmp_path / "imgs"), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "no images in" in capsys.readouterr().err
