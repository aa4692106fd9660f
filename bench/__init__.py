"""Benchmarks (`make bench-…`): each starts the servers it needs and writes bench-results/."""
