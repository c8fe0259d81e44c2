"""The `phasezoo` command: one entry point over every layer's commands (the top layer; nothing imports it)."""
