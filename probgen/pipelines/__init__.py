"""probgen.pipelines."""
