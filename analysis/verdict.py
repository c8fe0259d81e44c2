"""`python -m analysis.verdict` = `phasezoo verdict` (kept for scripts and notes written before the CLI).

The implementation is `analysis.upload.verdict`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.upload.verdict import main

    sys.exit(main(prog="python -m analysis.verdict"))
