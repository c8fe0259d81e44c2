"""Importers of published zoos into the zoo format."""
