"""The benchmarks' CPU accounting from /proc: a process's own time and its children's,
those still running and those already reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import process_tree_cpu_s

BURN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


def test_a_reaped_childs_cpu_counts_for_its_parent():
    before = process_tree_cpu_s(os.getpid())
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert process_tree_cpu_s(os.getpid()) - before >= 0.25


def test_a_running_childs_cpu_counts_for_its_parent():
    tree, own = process_tree_cpu_s(os.getpid()), time.process_time()

    def childs() -> float:  # the tree's growth less this process's own
        return process_tree_cpu_s(os.getpid()) - tree - (time.process_time() - own)

    child = subprocess.Popen([sys.executable, "-c", BURN + "\nimport sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while childs() < 0.25:  # its burn, while it still runs (waiting on stdin)
            assert time.monotonic() < deadline, "the child's CPU never showed"
            time.sleep(0.05)
    finally:
        child.communicate(b"")


def test_an_unknown_process_has_no_cpu():
    assert process_tree_cpu_s(2**22 + 1) == 0.0  # above pid_max: no such process, no children
