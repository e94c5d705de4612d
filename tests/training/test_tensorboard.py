import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import probgen
from probgen.cli import main
from probgen.errors import UserError
from probgen.plots import save_grid
from probgen.training.tensorboard import INSTALL_HINT, SUBDIR, TensorBoard, require_tensorboard
from tests.factories import TINY_FLAGS
from tests.utils.events import read_events, read_png


def test_scalars_and_grids_round_trip_and_grids_equal_the_pngs(tmp_path):
    pytest.importorskip("tensorboard")
    images = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with TensorBoard.for_run(tmp_path, enabled=True) as tb:
        tb.scalars("train", {"loss": 2.5, "count": 3, "flag": True, "name": "x"}, step=7)  # numbers only
        tb.rows([{"epoch": 1, "step": 9, "split": "test", "loss": 1.25, "kl": 0.5}])
        tb.images("samples", images, step=7, nrow=4)
        tb.images("samples", torch.zeros(12, 1, 8, 8), step=7, nrow=4)  # the same step again: kept once
    assert not tb.enabled  # closed
    scalars, grids = read_events(tmp_path / SUBDIR)
    assert scalars == {"train/loss": [(7, 2.5)], "train/count": [(7, 3.0)], "test/loss": [(9, 1.25)],
                       "test/kl": [(9, 0.5)]}  # fmt: skip
    [(step, grid)] = grids["samples"]
    assert step == 7 and grid.shape == (2 + 3 * 10, 2 + 4 * 10, 3)  # 3 rows x 4 of 8 px, 2 px padding
    assert np.array_equal(grid, read_png(save_grid(images, tmp_path / "grid.png", nrow=4)))


def test_a_disabled_writer_writes_nothing(tmp_path):
    tb = TensorBoard.for_run(tmp_path, enabled=False)
    tb.scalars("train", {"loss": 1.0}, 1)
    tb.images("samples", torch.zeros(4, 1, 8, 8), 1)
    tb.flush()
    tb.close()
    assert not tb.enabled and list(tmp_path.iterdir()) == []


def test_missing_package_is_a_one_line_error_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` raises ImportError
    require_tensorboard(False)  # off: nothing is imported
    with pytest.raises(UserError, match=r"pip install 'probgen\[tensorboard\]'"):
        require_tensorboard(True)
    for kind, flags in (("vae", TINY_FLAGS), ("gan", ["--dataset", "dsprites", "--no-progress"])):
        out = tmp_path / kind
        assert main(["fit", kind, *flags, "--tensorboard", "--out", str(out)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"probgen: error: {INSTALL_HINT}"]
        assert not out.exists()  # failed before the run directory was made


def test_without_the_flag_nothing_is_imported_or_written(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys; from probgen.cli import main; "
        f"assert main({['fit', 'vae', *TINY_FLAGS, '--max-steps', '1', '--out', str(out)]!r}) == 0; "
        "assert 'torch.utils.tensorboard' not in sys.modules and 'tensorboard' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(probgen.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
    assert (out / "checkpoint.pt").is_file() and not (out / SUBDIR).exists()


def test_a_new_writer_sorts_after_the_files_already_there(tmp_path):
    """TensorBoard reads event files in name order; same-second names differ only in a text-compared counter."""
    import socket
    import time

    from probgen.training.tensorboard import _summary_writer_class

    _summary_writer_class()  # the first import takes seconds: do it before reading the clock
    log_dir = tmp_path / "tb"
    log_dir.mkdir()
    now = int(time.time())  # this process's name for a file of this second, with a counter of 99
    old = log_dir / f"events.out.tfevents.{now:010d}.{socket.gethostname()}.{os.getpid()}.99"
    old.write_bytes(b"")
    names = []
    for step in range(3):
        with TensorBoard(log_dir, purge_step=step) as tb:
            tb.scalars("train", {"loss": 1.0}, step)
        names.append(max(set(os.listdir(log_dir)) - {old.name, *names}))
    assert sorted(os.listdir(log_dir)) == [old.name, *names]
