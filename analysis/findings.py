"""`python -m analysis.findings` = `phasezoo findings` (kept for scripts and notes written before the CLI).

The implementation is `analysis.studies.findings`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.studies.findings import main

    sys.exit(main(prog="python -m analysis.findings"))
