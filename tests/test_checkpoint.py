import os
import pickle

import pytest
import torch

from probgen.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from probgen.errors import UserError


def test_round_trip_and_kind_check(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"kind": "vae", "state": {"w": torch.arange(3.0)}, "step": 4})
    data = load_checkpoint(path, kind="vae")
    assert data["step"] == 4 and torch.equal(data["state"]["w"], torch.arange(3.0))
    assert data["format"] == "probgen-checkpoint" and "probgen_version" in data
    with pytest.raises(UserError, match="'vae' model, but this command needs gan"):
        load_checkpoint(path, kind="gan")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_code_executing_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "probgen-checkpoint", "kind": "vae", "x": _Exploit()}, evil)
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(evil)
    assert not (tmp_path / "PWNED").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(UserError):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_garbage_files_are_user_errors(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match="--ckpt"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_user_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"kind": "vae", "state": {"w": torch.randn(1000)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file_is_not_a_probgen_checkpoint(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="not a probgen checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_failed_write_keeps_the_old_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"kind": "vae", "step": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("serialisation failed half-way")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, {"kind": "vae", "step": 2, "bad": Boom()})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = rng_state()
    a = (torch.rand(3), np.random.rand(), random.random())  # noqa: NPY002
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(), random.random())  # noqa: NPY002
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
