"""`make load`: the end-to-end load test (see bench/load/run.py)."""
