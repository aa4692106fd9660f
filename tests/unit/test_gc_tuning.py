"""The worker's and API's garbage-collector settings (deltran/gc_tuning.py)."""

from __future__ import annotations

import gc

import pytest

from deltran import gc_tuning
from deltran.config import Settings


@pytest.fixture
def restore_gc():
    """The suite's own tuning (tests/conftest.py) back as it was: thresholds, and a frozen
    heap frozen again."""
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    yield
    gc.unfreeze()
    if frozen:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*thresholds)


def test_tune_freezes_what_lives_and_raises_the_thresholds(restore_gc):
    survivor = [[n] for n in range(10)]  # alive at start-up: frozen, never scanned again
    assert any(o is survivor[0] for o in gc.get_objects())

    gc_tuning.tune(12_345)

    assert gc.get_threshold() == (12_345, gc_tuning.GEN1_THRESHOLD, gc_tuning.GEN2_THRESHOLD)
    assert gc.get_freeze_count() >= len(survivor)
    assert not any(o is survivor[0] for o in gc.get_objects())  # out of the collector's sight


def test_cycles_are_still_collected_after_tuning(restore_gc):
    gc_tuning.tune(700)

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # the cycle is found and freed


def test_settings_default_and_override(monkeypatch):
    assert Settings().gc_gen0_threshold == 50_000
    assert Settings().worker_max_concurrent_activities == 100
    monkeypatch.setenv("DELTRAN_GC_GEN0_THRESHOLD", "700")
    monkeypatch.setenv("DELTRAN_WORKER_MAX_CONCURRENT_ACTIVITIES", "2000")
    assert Settings().gc_gen0_threshold == 700
    assert Settings().worker_max_concurrent_activities == 2000
    monkeypatch.setenv("DELTRAN_GC_GEN0_THRESHOLD", "0")
    with pytest.raises(ValueError):
        Settings()
