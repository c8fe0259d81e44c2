"""Offline tasks (generated locally, nothing downloads) and their training objectives."""
