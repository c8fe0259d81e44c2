"""`python -m analysis.phase_classifier` = `phasezoo classifier` (kept for scripts and notes written before the CLI).

The implementation is `analysis.taxonomy.classifier`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.taxonomy.classifier import main

    sys.exit(main(prog="python -m analysis.phase_classifier"))
