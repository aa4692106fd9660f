"""The independent auditor (tests/support/auditor.py): random operations on the real
stack, every money invariant checked after each one.

`DELTRAN_AUDIT_STEPS` sets the length (30 here, in `make test`; `make chaos` runs it
long) and `DELTRAN_AUDIT_SEED` replays a failure's sequence.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.support.auditor import Auditor, violations, wait_until_quiet


@pytest.mark.slow
async def test_random_operations_never_break_the_money(http, credentials, sessions, settings, temporal_env, worker):
    seed = int(os.environ.get("DELTRAN_AUDIT_SEED") or random.randrange(2**32))
    steps = int(os.environ.get("DELTRAN_AUDIT_STEPS") or 30)
    auditor = Auditor(random.Random(seed), http, credentials, sessions, settings, temporal_env.client)
    done: list[str] = []
    replay = f"replay: DELTRAN_AUDIT_SEED={seed} DELTRAN_AUDIT_STEPS={steps} .venv/bin/pytest {__file__}"
    for step in range(steps):
        try:
            done.append(await auditor.step())
        # An operation got an answer it must never get, or waited in vain for one.
        except (AssertionError, TimeoutError) as exc:
            raise AssertionError(f"step {step} of seed {seed} failed: {exc!r}\n{replay}\n" + "\n".join(done)) from exc
        found = await violations(sessions, temporal_env.client, auditor.workflow_ids)
        assert not found, f"after step {step} of seed {seed} ({done[-1]}): {found}\n{replay}\n" + "\n".join(done)
    await auditor.drain()
    await wait_until_quiet(sessions)
    found = await violations(sessions, temporal_env.client, auditor.workflow_ids)
    assert not found, f"at the end of seed {seed}: {found}"
    print(f"auditor: seed {seed}, {steps} steps, 0 violations")
    if os.environ.get("DELTRAN_AUDIT_VERBOSE"):
        print("\n".join(done))
