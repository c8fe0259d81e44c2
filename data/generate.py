"""`python -m data.generate` = `phasezoo generate` (kept for scripts and notes written before the CLI).

The implementation is `data.training.generate`; this module only runs its `main` as a command.
"""
if __name__ == "__main__":
    import sys

    from data.training.generate import main

    sys.exit(main(prog="python -m data.generate"))
