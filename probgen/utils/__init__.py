"""probgen.utils."""
