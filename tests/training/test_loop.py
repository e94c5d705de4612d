"""The training loop's contract on its own: a toy model kind that implements the hooks and records what it sees."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from probgen.checkpoint import load_checkpoint
from probgen.config import DataConfig, RunConfig, TrainConfig
from probgen.errors import NumericalError
from probgen.training.batches import epoch_permutation
from probgen.training.loop import Trainer
from probgen.utils.io import read_csv

pytestmark = pytest.mark.usefixtures("one_torch_thread")

B = 8  # 40 dSprites images: 36 train -> 4 steps per epoch (drop_last)


@dataclass
class ToyConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


class Toy(Trainer):
    """One weight w fitted to each image's mean pixel; sums of (w - mean)^2 and of the image count."""

    kind = "toy"
    config_cls = ToyConfig
    term_names = ("loss", "count")
    stop_after: int | None = None  # should_stop once this many epochs have been seen by after_epoch
    nan_at: int | None = None  # the step (0-based) whose loss is NaN

    def build(self) -> None:
        self.net = nn.Linear(1, 1, bias=False)
        self.modules["net"] = self.net
        self.optimizers["opt"] = torch.optim.SGD(self.net.parameters(), lr=self.cfg.train.lr)
        self.calls: list[str] = ["build"]
        self.seen: list[torch.Tensor] = []
        self.epochs_seen = 0

    def train_step(self, idx: torch.Tensor, check: Callable[[torch.Tensor], None]) -> torch.Tensor:
        self.seen.append(idx.clone())
        target = self.batch_images(idx).mean(dim=(1, 2, 3))  # (B,)
        loss = ((self.net.weight[0, 0] - target) ** 2).sum()
        if self.step == self.nan_at:
            loss = loss * float("nan")
        self.optimizers["opt"].zero_grad()
        loss.backward()
        check(loss)
        self.optimizers["opt"].step()
        return torch.stack([loss.detach(), torch.tensor(float(len(idx)))])

    def after_epoch(self) -> None:
        self.epochs_seen += 1
        self.calls.append(f"after_epoch {self.epoch}")

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.epochs_seen >= self.stop_after

    def extra_payload(self) -> dict[str, Any]:
        return {"epochs_seen": self.epochs_seen}

    def restore_extra(self, ckpt: dict[str, Any]) -> None:
        self.epochs_seen = ckpt["epochs_seen"]
        self.calls.append("restore_extra")

    def epoch_figures(self) -> None:
        assert not self.net.training  # figures see eval mode
        self.calls.append(f"epoch_figures {self.epoch}")

    def before_final_save(self) -> None:
        self.calls.append("before_final_save")

    def final_figures(self) -> None:
        self.calls.append("final_figures")

    def final_metrics(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"toy_final": rows[-1]["loss"]}


class ToySteps(Toy):
    step_rows = True


def _cfg(out: Path, bookkeeping_every: float = 0.0, **train: Any) -> ToyConfig:
    t = {"epochs": 2, "batch_size": B, "lr": 0.1, "checkpoint_every": 1000, "sample_epochs": (2,), **train}
    data = DataConfig(dataset="dsprites", limit=40, image_size=16, data_root=str(out.parent / "no-data"))
    run = RunConfig(out=str(out), progress=False, bookkeeping_every=bookkeeping_every)
    return ToyConfig(data=data, train=TrainConfig(**t), run=run)


def _trainer(cls: type[Toy], out: Path, resume: bool = False, bookkeeping_every: float = 0.0, **train: Any) -> Toy:
    out.mkdir(exist_ok=True)
    return cls(_cfg(out, bookkeeping_every, **train), out, resume)


@pytest.mark.parametrize("cls", [Toy, ToySteps])
def test_figures_and_epoch_checkpoints_run_at_a_bounded_rate(tmp_path, monkeypatch, cls):
    import probgen.plots
    import probgen.training.loop as loop

    drawn, saved = [], []
    monkeypatch.setattr(probgen.plots, "plot_curves", lambda *a, **k: drawn.append(1))
    save = loop.save_checkpoint
    monkeypatch.setattr(
        loop, "save_checkpoint", lambda path, payload: saved.append(payload["step"]) or save(path, payload)
    )
    rare = _trainer(cls, tmp_path / "rare", bookkeeping_every=3600, epochs=4)
    rare.run()  # a long interval: loss_curves.png and the checkpoint are written once, at the end
    end = 4 * rare.steps_per_epoch
    assert (len(drawn), saved) == (1, [end])
    assert len(read_csv(tmp_path / "rare" / "losses.csv")) == (end if cls.step_rows else 4)  # every row kept
    drawn.clear(), saved.clear()
    _trainer(cls, tmp_path / "every", bookkeeping_every=0, epochs=4).run()  # 0: at every epoch's end, as before
    assert len(drawn) == 5 and saved == [rare.steps_per_epoch * e for e in (1, 2, 3, 4, 4)]


def test_each_epoch_visits_its_permutation_and_hooks_run_in_order(tmp_path):
    t = _trainer(Toy, tmp_path / "run")
    metrics = t.run()
    n, steps = len(t.train_images), t.steps_per_epoch
    assert steps == n // B and metrics["steps"] == 2 * steps
    for epoch in range(2):
        perm = epoch_permutation(n, 0, epoch)[: steps * B]
        assert torch.equal(torch.cat(t.seen[epoch * steps : (epoch + 1) * steps]), perm)
    assert t.calls == ["build", "after_epoch 1", "after_epoch 2", "epoch_figures 2", "before_final_save",
                       "final_figures"]  # fmt: skip
    rows = read_csv(tmp_path / "run" / "losses.csv")  # a row per epoch and split: sums / images
    assert [(r["epoch"], r["split"], float(r["count"])) for r in rows] == [("1", "train", 1.0), ("2", "train", 1.0)]
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["toy_final"] == pytest.approx(float(rows[-1]["loss"])) and "final" not in written


def test_state_hooks_round_trip_and_should_stop_ends_before_the_next_epoch(tmp_path):
    t = _trainer(Toy, tmp_path / "run", epochs=5)
    t.stop_after = 2
    assert t.run()["epochs_completed"] == 2
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt", kind="toy")
    assert ckpt["epochs_seen"] == 2 and ckpt["step"] == 2 * t.steps_per_epoch
    again = _trainer(Toy, tmp_path / "run", resume=True, epochs=5)
    again.stop_after = 2
    assert again.calls == ["build", "restore_extra"] and again.epochs_seen == 2
    again.run()
    assert again.seen == [] and again.step == ckpt["step"]  # stopped: no step is taken


def test_step_rows_give_one_row_per_step_with_sums_over_the_batch(tmp_path):
    t = _trainer(ToySteps, tmp_path / "run", max_steps=6)
    t.run()
    rows = read_csv(tmp_path / "run" / "losses.csv")
    assert list(rows[0]) == ["step", "epoch", "loss", "count"]
    assert [(int(r["step"]), int(r["epoch"])) for r in rows] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]
    assert all(float(r["count"]) == 1.0 for r in rows)  # the step's sum over B images / B
    torch.manual_seed(0)  # the loop seeds before build: the initial weight
    w0 = nn.Linear(1, 1, bias=False).weight[0, 0].detach()
    first = ((w0 - t.batches.images(t.seen[0]).mean(dim=(1, 2, 3))) ** 2).mean()  # the batch mean of step 1
    assert float(rows[0]["loss"]) == pytest.approx(float(first), rel=1e-5)


def test_a_nan_loss_stops_before_the_update_and_keeps_the_last_good_checkpoint(tmp_path):
    t = _trainer(Toy, tmp_path / "run", checkpoint_every=2)
    t.nan_at = 2  # the third step
    with pytest.raises(NumericalError, match="at step 3"):
        t.run()
    before = load_checkpoint(tmp_path / "run" / "checkpoint.pt", kind="toy")
    assert before["step"] == 2
    assert torch.equal(before["state"]["net"]["weight"], t.net.weight.detach())  # the NaN step never updated w
