"""QA dashboard for built layered-video datasets.

``python -m dashboard.server --data out/coarse`` serves an interactive page (overview, filterable
sample grid, synced fg/alpha/bg/blend player, rejects); ``python -m dashboard.export`` writes a static
report that opens from disk. Everything is read straight from the shards: nothing is extracted.
"""
