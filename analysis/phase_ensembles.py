"""`python -m analysis.phase_ensembles` = `phasezoo ensembles` (kept for scripts and notes written before the CLI).

The implementation is `analysis.studies.phase_ensembles`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.studies.phase_ensembles import main

    sys.exit(main(prog="python -m analysis.phase_ensembles"))
