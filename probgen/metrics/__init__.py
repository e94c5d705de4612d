"""probgen.metrics."""
