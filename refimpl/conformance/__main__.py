"""``python -m refimpl.conformance --driver "CMD ..."``: the conformance report (DRV-REPORT)."""

import sys

from refimpl.conformance.report import main

sys.exit(main())
