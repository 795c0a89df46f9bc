"""Command-line plumbing shared by `worker.py` and `starter.py`."""
