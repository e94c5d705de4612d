"""`python -m probgen` (also what `torchrun -m probgen` runs)."""

import sys

from probgen.cli import main

sys.exit(main())
