"""The chatsite benchmark harness: `.venv/bin/python -m bench` (see bench/run.py)."""
