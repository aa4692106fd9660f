"""Benchmarks (`make bench-…`): each starts the servers it needs and writes its JSON to
.deltran/bench-results/, or to the tracked bench-results/ with DELTRAN_BENCH_RECORD=1."""
