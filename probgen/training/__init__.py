"""probgen.training: the one training loop every model kind shares, and its parts.

``loop`` (:class:`~probgen.training.loop.Trainer` and :func:`~probgen.training.loop.fit`),
``resume`` (data order, which fields a resumed run may change), ``guards`` (NaN/Inf, signals),
``batches`` (data placement and streaming), ``distributed`` (torchrun + DDP), ``perf`` (speed
options), ``ema`` (a sync-free EMA copy of a network), ``runlog`` (the run's log file).
See docs/architecture.md.
"""
