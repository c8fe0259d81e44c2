"""`python -m analysis.run` = `phasezoo run` (kept for scripts and notes written before the CLI).

The implementation is `analysis.runner.run`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.runner.run import main

    sys.exit(main(prog="python -m analysis.run"))
