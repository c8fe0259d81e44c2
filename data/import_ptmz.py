"""`python -m data.import_ptmz` = `phasezoo import` (kept for scripts and notes written before the CLI).

The implementation is `data.importers.ptmz`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from data.importers.ptmz import main

    sys.exit(main(prog="python -m data.import_ptmz"))
