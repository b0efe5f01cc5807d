"""``python -m sparsenu`` (also what ``torchrun -m sparsenu train ...`` runs)."""
import sys

from sparsenu.cli import main

sys.exit(main())
