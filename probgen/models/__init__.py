"""probgen.models."""
