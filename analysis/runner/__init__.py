"""The metric runner: one resumable loop over a zoo's models, seed pairs and cells, and the migrations
that recompute or rewrite stored rows when a metric's computation changes."""
