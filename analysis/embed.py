"""`python -m analysis.embed` = `phasezoo embed` (kept for scripts and notes written before the CLI).

The implementation is `analysis.studies.embed`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.studies.embed import main

    sys.exit(main(prog="python -m analysis.embed"))
