"""probgen.inference."""
