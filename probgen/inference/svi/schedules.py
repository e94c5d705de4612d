"""beta schedules for the KL weight: constant, linear warm-up, and cyclical (Fu et al. 2019).

A schedule is a pure function of the optimiser step, so resuming at step s restores it exactly.
"""

from __future__ import annotations


def beta_at(step: int, beta: float, schedule: str, warmup_steps: int, cycle_steps: int) -> float:
    """The KL weight at optimiser step ``step`` (0-based).

    - ``constant``: ``beta``.
    - ``linear``: ``beta * min(1, (step + 1) / warmup_steps)``, reaching ``beta`` after warm-up.
    - ``cyclical``: each period of ``cycle_steps`` ramps linearly from 0 to ``beta`` over its first
      half, then holds ``beta`` for the second half (Fu et al. 2019, R = 0.5).
    """
    if schedule == "constant":
        return beta
    if schedule == "linear":
        return beta * min(1.0, (step + 1) / warmup_steps)
    if schedule == "cyclical":
        ramp = cycle_steps / 2
        return beta * min(1.0, (step % cycle_steps + 1) / ramp)
    raise ValueError(f"unknown beta schedule {schedule!r}")
