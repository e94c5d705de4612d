"""Official splits under --limit, and validation carved from train."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from probgen.data.splits import carve_val, limit_official


def test_no_limit_keeps_everything():
    idx = limit_official({"train": 5, "test": 2}, None, 0)
    assert idx["train"].tolist() == [0, 1, 2, 3, 4] and idx["test"].tolist() == [0, 1]


def test_limit_is_proportional_and_keeps_tiny_splits():
    idx = limit_official({"train": 5216, "val": 16, "test": 624}, 100, 0)
    assert {k: len(v) for k, v in idx.items()} == {"train": 88, "val": 1, "test": 11}


@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=4),
    limit=st.integers(1, 120),
    seed=st.integers(0, 3),
)
def test_limit_exact_total_distinct_sorted(sizes, limit, seed):
    named = {f"s{i}": n for i, n in enumerate(sizes)}
    idx = limit_official(named, limit, seed)
    total = sum(sizes)
    assert sum(len(v) for v in idx.values()) == min(limit, total)
    for k, v in idx.items():
        assert len(set(v.tolist())) == len(v) and (v < named[k]).all()
        assert torch.equal(v, v.sort().values)
    if limit >= sum(n > 0 for n in sizes):
        assert all(len(idx[k]) >= 1 for k, n in named.items() if n > 0)


def test_carve_val():
    train, val = carve_val(torch.arange(10, 20), 0.3, 0)
    assert len(train) == 7 and len(val) == 3
    assert sorted(train.tolist() + val.tolist()) == list(range(10, 20))
    same, none = carve_val(torch.arange(4), 0.0, 0)
    assert same.tolist() == [0, 1, 2, 3] and none is None
