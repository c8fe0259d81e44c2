"""Metrics: the registry (what a metric declares), its plug-ins (the registered definitions) and the
catalog that loads them. The registry imports none of its plug-ins; `catalog` is the one list of them."""
