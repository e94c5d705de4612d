"""probgen.training: the one training loop every model kind shares, its parts and the trainers.

``loop`` (:class:`~probgen.training.loop.Trainer` and :func:`~probgen.training.loop.fit`), ``hooks``
(what a kind overrides), ``trainers/<kind>`` (one Trainer subclass per model kind), ``batches`` (data
order, placement and streaming), ``guards`` (NaN/Inf, signals), ``distributed`` and ``ddp`` (torchrun +
DDP), ``perf`` (speed options), ``ema`` (a sync-free EMA copy of a network), ``runlog`` (the run's
log file), ``rundir`` (run directories: start, resume, refuse) and ``tensorboard``.
See docs/architecture.md.
"""
