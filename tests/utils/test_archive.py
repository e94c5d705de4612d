import io
import tarfile
import zipfile

import pytest

from probgen.errors import UserError
from probgen.utils.archive import safe_extract


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as zf:
        for n in names:
            zf.writestr(n, b"data")
    return path


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            data = b"data" if m.isfile() else None
            if data is not None:
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data) if data is not None else None)
    return path


def test_good_archives_extract(tmp_path):
    files = safe_extract(_zip(tmp_path / "a.zip", ["chest_xray/train/NORMAL/1.jpeg", "b.txt"]), tmp_path / "out")
    assert (tmp_path / "out/chest_xray/train/NORMAL/1.jpeg").read_bytes() == b"data" and len(files) == 2
    safe_extract(_tar(tmp_path / "a.tgz", [tarfile.TarInfo("imgs/x.png")]), tmp_path / "out2")
    assert (tmp_path / "out2/imgs/x.png").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil-abs.txt"])
def test_zip_slip_is_refused_before_writing(tmp_path, name):
    arc = _zip(tmp_path / "bad.zip", ["ok.txt", name])
    with pytest.raises(UserError, match="refused"):
        safe_extract(arc, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()  # nothing extracted at all


def test_tar_slip_and_outward_links_are_refused(tmp_path):
    with pytest.raises(UserError, match="refused"):
        safe_extract(_tar(tmp_path / "b.tgz", [tarfile.TarInfo("../evil.txt")]), tmp_path / "out")
    link = tarfile.TarInfo("inside/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    with pytest.raises(UserError, match="link"):
        safe_extract(_tar(tmp_path / "c.tgz", [link]), tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"nope")
    with pytest.raises(UserError, match="not a zip or tar"):
        safe_extract(tmp_path / "x.zip", tmp_path / "out")


def test_data_extract_command(tmp_path, capsys):
    from probgen.cli import main

    arc = _zip(tmp_path / "bitmojis.zip", ["bitmoji/a.png"])
    assert main(["data", "extract", str(arc), "--data-root", str(tmp_path / "root")]) == 0
    assert (tmp_path / "root/bitmoji/a.png").exists()
    evil = _zip(tmp_path / "evil.zip", ["../x"])
    assert main(["data", "extract", str(evil), "--data-root", str(tmp_path / "r2")]) == 2
    assert "refused" in capsys.readouterr().err
