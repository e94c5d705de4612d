"""The hook surface of the training loop: what a model kind writes to train on :class:`~probgen.training.loop.Trainer`.

Like Pyro's ``MCMCKernel`` (``setup`` / ``sample`` / ``diagnostics``), a kind implements two hooks
and may override a few others; the loop owns the data order, checkpoints, exact resume, signals,
the NaN guard, torchrun/DDP, the data placement, the speed options and the run files.

==================  ==========================================================================
set-up              ``build()`` (required): ``self.modules`` and ``self.optimizers``, whose names
                    are the checkpoint's state keys. ``resolve_config``, ``labels``, ``speed_nets``.
step                ``train_step(idx, check)`` (required): one update on training images ``idx``;
                    returns detached batch sums of ``term_names``. ``batch_images(idx)`` gives them.
state               ``extra_payload()`` / ``restore_extra(ckpt)``: more checkpoint entries (fixed
                    noise, early-stopping state); ``learning_rates()`` applied on resume.
epoch end           ``after_epoch()`` (e.g. an evaluation) runs on every rank before the epoch's
                    checkpoint; ``should_stop()`` ends training early (checked at epoch starts).
diagnostics         rows of losses.csv: ``train_row``, ``test_row`` per epoch, or one row per step
                    (``step_rows = True``); ``describe``, ``status`` (log line), ``curves`` /
                    ``step_curves`` (loss_curves.png), ``final_metrics``, ``metrics_extra``.
figures             ``epoch_figures``, ``final_figures``, ``tensorboard_images``,
                    ``tensorboard_scalars``, ``before_final_save``.
==================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from probgen.data import Split
from probgen.models.registry import kind_of_config


class Hooks:
    """The overridable part of a :class:`~probgen.training.loop.Trainer`; every default is a no-op or the VAE's.

    Class attributes: ``config_cls`` (the fit config of a registered model kind: a dataclass with
    ``data``, ``train`` and ``run`` sections, optionally ``perf``; it gives :attr:`kind`), ``term_names``
    (the batch sums ``train_step`` returns), ``resumable`` (fields a resumed run may change, per
    section), ``outputs`` (named in the last log line), ``supports_ddp`` (``train_step`` is correct
    under torchrun: its gradients are all-reduced) and ``step_rows``.
    """

    config_cls: ClassVar[type]
    term_names: ClassVar[tuple[str, ...]]
    resumable: ClassVar[dict[str, tuple[str, ...]]]
    outputs: ClassVar[tuple[str, ...]] = ("losses.csv", "loss_curves.png", "metrics.json")
    supports_ddp: ClassVar[bool] = False
    step_rows: ClassVar[bool] = False  # losses.csv: one row per step (step, epoch, *term_names), not per epoch

    @property
    def kind(self) -> str:
        """The model kind (checkpoint kind, run-directory prefix): the registry's entry for ``config_cls``."""
        return kind_of_config(self.config_cls).name

    # --- set-up ---------------------------------------------------------------------------------

    def resolve_config(self, cfg: Any) -> Any:
        """A new run's config with data-dependent defaults filled in (e.g. the likelihood)."""
        return cfg

    def labels(self, split: Split) -> torch.Tensor | None:
        """Per-image labels (N,) on the device, for models that need them."""
        return None

    def build(self) -> None:
        """Create ``self.modules`` and ``self.optimizers`` (their names are the checkpoint's state keys)."""
        raise NotImplementedError

    def speed_nets(self) -> list[nn.Module]:
        """The networks the speed options (channels_last, amp, compile) apply to."""
        return list(self.modules.values())  # type: ignore[attr-defined]

    # --- the step -------------------------------------------------------------------------------

    def train_step(self, idx: torch.Tensor, check: Callable[[torch.Tensor], None]) -> torch.Tensor:
        """One update on training images ``idx`` (B,); returns detached batch sums of ``term_names``.

        ``check(loss)`` must run after backward and before the optimizer steps (the NaN guard). Under
        torchrun, ``idx`` is this rank's slice of the global batch and the sums are this rank's.
        """
        raise NotImplementedError

    # --- state ----------------------------------------------------------------------------------

    def extra_payload(self) -> dict[str, Any]:
        """More top-level checkpoint entries (tensors on the CPU, plain data)."""
        return {}

    def restore_extra(self, ckpt: dict[str, Any]) -> None:
        """Read back what :meth:`extra_payload` stored (on --resume, before the RNG is restored)."""

    def learning_rates(self) -> dict[str, float]:
        """The learning rate of each optimizer; a resumed run applies them (it may lower ``--lr``)."""
        return {name: self.cfg.train.lr for name in self.optimizers}  # type: ignore[attr-defined]

    # --- epoch end ------------------------------------------------------------------------------

    def after_epoch(self) -> None:
        """Runs on every rank at each epoch's end (``self.epoch`` counts it), before its checkpoint."""

    def should_stop(self) -> bool:
        """True ends training before the next epoch (early stopping); part of the checkpointed state."""
        return False

    # --- diagnostics ----------------------------------------------------------------------------

    def train_row(self, sums: torch.Tensor, n: int) -> dict[str, float]:
        """The epoch's training row from the running sums over ``n`` images."""
        return {name: v / max(n, 1) for name, v in zip(self.term_names, sums.tolist())}

    def test_row(self) -> dict[str, float] | None:
        """Per-image averages on the test split (None: no test split or nothing to report)."""
        return None

    def describe(self, row: dict[str, Any]) -> str:
        """One row of the epoch's log line."""
        return f"loss {row['loss']:.2f}"

    def status(self) -> str:
        """Extra state for the epoch's log line (e.g. the current beta)."""
        return ""

    def curves(self) -> dict[str, tuple[str, float]]:
        """Panels of loss_curves.png from the epoch rows: title -> (column of losses.csv, sign)."""
        return {"loss": ("loss", 1.0)}

    def step_curves(self) -> dict[str, dict[str, str]]:
        """Panels of loss_curves.png from the step rows (``step_rows``): title -> {label: column}."""
        return {name: {name: name} for name in self.term_names}

    def final_metrics(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """metrics.json's report of the run's end, from the epoch rows (the last one per split)."""
        return {
            "final": {r["split"]: r for r in rows},
            "units": "nats per image (averages over the split); bits/dim = nats / (pixels * ln 2)",
        }

    def metrics_extra(self) -> dict[str, Any]:
        """More entries of metrics.json (e.g. the likelihood)."""
        return {}

    # --- figures --------------------------------------------------------------------------------

    def epoch_figures(self) -> None:
        """Figures written at the epochs of ``--sample-epochs`` (rank 0, modules in eval mode)."""

    def final_figures(self) -> None:
        """Figures written at the end of the run (rank 0, modules in eval mode)."""

    def tensorboard_images(self, final: bool) -> dict[str, tuple[torch.Tensor, int]]:
        """``--tensorboard`` grids at every epoch's end (and the run's end when ``final``): tag -> (images, nrow).

        Images are in [0, 1], (N, C, H, W); the modules are in eval mode and the RNG is restored afterwards.
        """
        return {}

    def tensorboard_scalars(self) -> dict[str, dict[str, float]]:
        """``--tensorboard`` scalars of the current step at an epoch's end: prefix -> {name: value}.

        Logged again when a run resumes from that epoch's checkpoint (TensorBoard purged them).
        """
        return {}

    def before_final_save(self) -> None:
        """Runs once training is done, before the last checkpoint is written."""
