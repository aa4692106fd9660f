"""Garbage-collector settings for the long-running processes (worker, API).

CPython's cyclic collector runs its youngest generation every 700 net allocations and
walks every tracked object on a full collection. A busy worker allocates heavily (rows,
futures, workflow activations) while holding many long-lived objects (imported modules,
the workflow cache), so with the default thresholds a measurable share of its CPU went
to collections that find almost nothing: reference counting already frees nearly all of
its garbage. Minting went from about 6,400 to about 8,300 mints/s with the collector
tuned (`make bench-mint`, which uses the same settings as the worker).

`tune()` moves everything alive after start-up out of the collector's sight
(`gc.freeze`) and raises the thresholds; cycles are still collected, just less often.
`DELTRAN_GC_GEN0_THRESHOLD=700` restores CPython's default.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

# Older generations: collect gen1 after this many gen0 runs, gen2 after this many gen1.
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune(gen0_threshold: int) -> None:
    """Call once, after imports and start-up, before taking work."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, GEN1_THRESHOLD, GEN2_THRESHOLD)
    log.info("gc: %d start-up objects frozen; thresholds %s", gc.get_freeze_count(), gc.get_threshold())
