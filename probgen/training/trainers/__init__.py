"""One :class:`~probgen.training.loop.Trainer` subclass per model kind (``<kind>.py``), and its
``fit_<kind>(cfg) -> run dir``. The model registry (``probgen/models/registry.py``) names them."""
