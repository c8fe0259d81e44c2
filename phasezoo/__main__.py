"""`python -m phasezoo` = `phasezoo`."""
import sys

from phasezoo.cli import main

sys.exit(main())
