"""Checkpoints from outside: read what a file declares, unpickle it without running code, load a flat
state dict."""
