"""``python -m h2aseg`` (also what ``torchrun -m h2aseg`` runs)."""

import sys

from h2aseg.cli import main

sys.exit(main())
