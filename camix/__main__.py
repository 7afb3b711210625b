"""``python -m camix`` (and ``torchrun -m camix``)."""

import sys

from camix.cli import main

sys.exit(main())
