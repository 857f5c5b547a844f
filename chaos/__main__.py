"""``python -m chaos``: run the chaos harness (see :mod:`chaos.harness`)."""

import sys

from chaos.harness import main

sys.exit(main())
