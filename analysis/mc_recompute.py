"""`python -m analysis.mc_recompute` = `phasezoo mc-recompute` (kept for scripts and notes written before the CLI).

The implementation is `analysis.runner.mc_recompute`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from analysis.runner.mc_recompute import main

    sys.exit(main(prog="python -m analysis.mc_recompute"))
