"""Architectures: the registry of width-scalable networks and their building blocks."""
