"""`python -m analysis.phases` = `phasezoo phases` (kept for scripts and notes written before the CLI).

The implementation is `analysis.taxonomy.phases`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.taxonomy.phases import main

    sys.exit(main(prog="python -m analysis.phases"))
