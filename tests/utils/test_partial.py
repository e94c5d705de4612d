from fractions import Fraction

import pytest
import torch

from probgen.errors import UserError
from probgen.utils.partial import PartialStore


def test_batches_round_trip_and_survive_a_reopen(tmp_path):
    store = PartialStore.open(tmp_path / "p", {"seed": 0, "k": [1, 2]})
    assert store.get("b0") is None and len(store) == 0
    payload = {"log_px": torch.arange(3.0, dtype=torch.float64), "flags": [["rhat"], [], []], "info": {"n": 3}}
    store.put("b0", payload)
    store.put("b1", {"x": None})
    again = PartialStore.open(tmp_path / "p", {"k": [1, 2], "seed": 0})  # same settings, any key order
    got = again.get("b0")
    assert torch.equal(got["log_px"], payload["log_px"]) and got["flags"] == payload["flags"]
    assert got["info"] == {"n": 3} and again.keys() == ["b0", "b1"]
    again.remove()
    assert not (tmp_path / "p").exists()


def test_other_settings_are_refused_unless_overwrite(tmp_path):
    PartialStore.open(tmp_path / "p", {"seed": 0, "n": 4}).put("b0", {"v": 1})
    with pytest.raises(UserError, match=r"other settings \(seed\).*--overwrite"):
        PartialStore.open(tmp_path / "p", {"seed": 1, "n": 4})
    fresh = PartialStore.open(tmp_path / "p", {"seed": 1, "n": 4}, overwrite=True)
    assert fresh.keys() == []
    assert PartialStore.open(tmp_path / "p", {"seed": 1, "n": 4}).keys() == []


def test_torn_and_temp_files_are_not_results(tmp_path):
    store = PartialStore.open(tmp_path / "p", {})
    store.put("b0", {"v": torch.ones(2)})
    (tmp_path / "p" / "b1.pt").write_bytes(b"\x80 half a file")  # not written by put: unreadable
    (tmp_path / "p" / ".b2.pt.abc.tmp").write_bytes(b"x")  # atomic_write's temp file of a killed put
    store = PartialStore.open(tmp_path / "p", {})
    assert not list((tmp_path / "p").glob(".*.tmp"))
    assert store.get("b1") is None and store.keys() == ["b0"]  # computed again, the torn file dropped
    with pytest.raises(ValueError, match="keys"):
        store.put("../escape", {})


def test_unsafe_pickles_are_not_loaded(tmp_path):
    store = PartialStore.open(tmp_path / "p", {})
    torch.save({"obj": Fraction(1, 3)}, tmp_path / "p" / "b0.pt")  # an arbitrary class: refused
    assert store.get("b0") is None
