"""The fallback of a clearing window whose net debtors did not all fund by the deadline.

Problem. Given the window's obligations and the funding each bank actually sent
(funded[b] >= 0; 0 for banks that sent nothing), settle the subset S of obligations of
largest total amount such that every bank's token balance stays >= 0:

    for every bank b:  funded[b] + (amounts of S received by b) - (amounts of S paid by b) >= 0

and roll the rest into the next window. This is a 0-1 multi-constraint knapsack
(NP-hard in general; one constraint row per bank).

Algorithm.
1. If the whole window is covered, settle it all ("all").
2. Otherwise solve it as a 0-1 integer program with HiGHS (scipy.optimize.milp):
   x_o in {0, 1}, maximise sum a_o x_o subject to, per paying bank b,
   sum_{o into b} a_o x_o - sum_{o out of b} a_o x_o >= -funded[b].
   Amounts are converted to integers (minor units, divided by their common gcd; a row's
   bound is then rounded up exactly, which is sound because its left side is an integer),
   so floats are only the solver's internal representation. Rows of banks that can pay
   all of their obligations from their funding alone are dropped (always satisfied).
   "exact" means the solver proved its set within `mip_rel_gap` (default 1e-6) of the
   optimum; pass 0 to prove optimality to the minor unit (on large windows with random
   amounts the last minor units are a subset-sum problem and can take far longer).
   The greedy below is run as well and the better of the two kept. The chosen set is
   always re-checked in exact Decimal arithmetic; a set that fails is never returned.
3. "greedy" when the solver is unavailable, fails, times out, its answer fails the
   check (it is then repaired by the same procedure, started from the solver's set), or
   the window exceeds MAX_EXACT_OBLIGATIONS. Start from all obligations; while
   some bank is in deficit, remove the outgoing obligation of that bank that best fixes
   it (the smallest one covering the whole deficit, else the largest). Removing a
   payment can push its payee into deficit, so the loop continues until no bank is in
   deficit; it terminates because each step removes one obligation and the empty set is
   feasible (funded >= 0). Then a second pass adds back removed obligations, largest
   first, whenever the payer can afford it (adding one only ever helps its payee).
   On a timeout with a verified incumbent, the better of the two is returned, still
   labelled "greedy" (not proven within the gap).

`leftover[b]` = funded[b] + net_b(S) for each bank in `funded`: what stays on its token
balance after S settles (funding not used is released).
"""
from __future__ import annotations

import logging
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Literal

from deltran.clearing.netting import _PRECISION, Obligation, check_obligation

log = logging.getLogger(__name__)

MAX_EXACT_OBLIGATIONS = 200_000
# Relative optimality gap the solver must prove. Proving optimality to the last minor
# unit is a subset-sum problem that can take HiGHS far longer than the deadline on large
# windows with random amounts (10,000 obligations: > 5 s at 0, about 1 s at 1e-6), and
# what is not settled only rolls into the next window.
MIP_REL_GAP = 1e-6
_ZERO = Decimal(0)

Method = Literal["all", "exact", "greedy"]


@dataclass(frozen=True)
class FallbackResult:
    settle: tuple[str, ...]  # obligation ids in S, in input order
    roll: tuple[str, ...]  # the others (rolled into the next window), in input order
    settled_value: Decimal
    method: str  # "all", "exact" (MILP, proven within mip_rel_gap) or "greedy" (not proven)
    leftover: dict[str, Decimal]  # funded[b] + net_b(S) for each bank in `funded`


def choose_settleable(
    obligations: Sequence[Obligation],
    funded: Mapping[str, Decimal],
    *,
    time_limit_s: float = 5.0,
    mip_rel_gap: float = MIP_REL_GAP,
    method: Literal["auto", "greedy"] = "auto",
) -> FallbackResult:
    """The largest-value set of obligations the fundings received can cover.

    `mip_rel_gap=0` asks the solver to prove optimality to the minor unit (may time
    out on large windows); `method="greedy"` skips the solver (tests, comparisons)."""
    _check(obligations, funded)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        everything = list(range(len(obligations)))
        if _feasible(obligations, funded, everything):
            return _result(obligations, funded, everything, "all")
        greedy = _greedy(obligations, funded)
        if method == "greedy" or len(obligations) > MAX_EXACT_OBLIGATIONS:
            return _result(obligations, funded, greedy, "greedy")
        solved, optimal = _exact(obligations, funded, time_limit_s, mip_rel_gap)
        if solved is not None and not _feasible(obligations, funded, solved):
            log.warning("fallback: the solver's set fails the exact check; repairing it greedily")
            solved, optimal = _greedy(obligations, funded, start=solved), False
        # The greedy costs little next to the solver: keep whichever settles more, so
        # the answer is never worse than the greedy's (within a non-zero gap it may be).
        best = greedy
        if solved is not None and _value(obligations, solved) >= _value(obligations, greedy):
            best = solved
        return _result(obligations, funded, best, "exact" if optimal else "greedy")


# --------------------------------------------------------------------------- checks


def _check(obligations: Sequence[Obligation], funded: Mapping[str, Decimal]) -> None:
    seen: set[str] = set()
    for obligation in obligations:
        check_obligation(obligation)
        if obligation.id in seen:
            raise ValueError(f"obligation id {obligation.id!r} appears twice")
        seen.add(obligation.id)
    for bank, amount in funded.items():
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise ValueError(f"funding of {bank!r} must be a finite Decimal >= 0, got {amount!r}")


def _balances(obligations: Sequence[Obligation], funded: Mapping[str, Decimal], chosen: Sequence[int]) -> dict[str, Decimal]:
    """funded[b] + net_b(chosen) for every bank named by `funded` or an obligation."""
    balance = dict(funded)
    for i in chosen:
        o = obligations[i]
        balance[o.payer] = balance.get(o.payer, _ZERO) - o.amount
        balance[o.payee] = balance.get(o.payee, _ZERO) + o.amount
    return balance


def _feasible(obligations: Sequence[Obligation], funded: Mapping[str, Decimal], chosen: Sequence[int]) -> bool:
    return all(b >= 0 for b in _balances(obligations, funded, chosen).values())


def _value(obligations: Sequence[Obligation], chosen: Sequence[int]) -> Decimal:
    return sum((obligations[i].amount for i in chosen), _ZERO)


def _result(obligations: Sequence[Obligation], funded: Mapping[str, Decimal], chosen: Sequence[int], method: Method) -> FallbackResult:
    keep = set(chosen)
    balance = _balances(obligations, funded, sorted(keep))
    assert all(b >= 0 for b in balance.values()), "never return an infeasible set"
    return FallbackResult(
        settle=tuple(o.id for i, o in enumerate(obligations) if i in keep),
        roll=tuple(o.id for i, o in enumerate(obligations) if i not in keep),
        settled_value=_value(obligations, sorted(keep)),
        method=method,
        leftover={bank: balance[bank] for bank in funded},
    )


# --------------------------------------------------------------------------- exact


def _integers(values: list[Decimal]) -> tuple[list[int], int]:
    """Scale Decimals to exact integers by 10**(most decimals found); returns the
    integers and the scale exponent."""
    decimals = max((-v.as_tuple().exponent for v in values if v.as_tuple().exponent < 0), default=0)  # type: ignore[operator]
    return [int(v.scaleb(decimals)) for v in values], decimals


def _exact(
    obligations: Sequence[Obligation], funded: Mapping[str, Decimal], time_limit_s: float, mip_rel_gap: float
) -> tuple[list[int] | None, bool]:
    """(chosen indices or None, proven optimal). Never raises."""
    try:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import coo_array
    except ImportError:
        log.warning("fallback: scipy is not installed; using the greedy")
        return None, False
    try:
        n = len(obligations)
        funders = list(funded)
        ints, _ = _integers([o.amount for o in obligations] + [funded[b] for b in funders])
        amounts, funding_int = ints[:n], dict(zip(funders, ints[n:]))
        # Dividing a row by the amounts' gcd g is exact: its left side stays an integer,
        # so `>= -F/g` is the same constraint as `>= -floor(F/g)`.
        g = math.gcd(*amounts)
        amounts = [a // g for a in amounts]
        outgoing: dict[str, int] = {}
        for o, a in zip(obligations, amounts):
            outgoing[o.payer] = outgoing.get(o.payer, 0) + a
        # Only banks that could run into deficit need a row.
        rows = {b: r for r, b in enumerate(b for b in outgoing if funding_int.get(b, 0) // g < outgoing[b])}
        bounds = [funding_int.get(b, 0) // g for b in rows]
        # Integers up to 2**40 are exact in a float and well inside HiGHS's ranges (it
        # rejects coefficients >= 1e15). Beyond that (amounts of tens of billions with
        # decimals) scale down: the answer may then be a hair off, and the exact check
        # and the greedy repair below catch that.
        unit = max(1.0, max(amounts + bounds) / 2.0**40)
        row_idx, col_idx, data = [], [], []
        for j, (o, a) in enumerate(zip(obligations, amounts)):
            if o.payer in rows:
                row_idx.append(rows[o.payer]); col_idx.append(j); data.append(-a / unit)
            if o.payee in rows:
                row_idx.append(rows[o.payee]); col_idx.append(j); data.append(a / unit)
        lower = np.array([-f / unit for f in bounds], dtype=float)
        matrix = coo_array((data, (row_idx, col_idx)), shape=(len(rows), n)).tocsr()
        result = milp(
            c=-np.array([a / unit for a in amounts]),
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            constraints=[LinearConstraint(matrix, lower, np.inf)],
            options={"time_limit": float(time_limit_s), "mip_rel_gap": float(mip_rel_gap), "presolve": True},
        )
    except Exception:  # a fallback must not fail: the greedy still answers
        log.exception("fallback: the MILP solver failed; using the greedy")
        return None, False
    if result.x is None:
        log.warning("fallback: the MILP solver found no solution (%s); using the greedy", result.message)
        return None, False
    chosen = [j for j in range(n) if result.x[j] > 0.5]
    return chosen, result.status == 0


# --------------------------------------------------------------------------- greedy


def _greedy(obligations: Sequence[Obligation], funded: Mapping[str, Decimal], start: Iterable[int] | None = None) -> list[int]:
    """A feasible set, not necessarily the best: from `start` (default: everything),
    remove payments of banks in deficit until none is, then add back, largest first,
    every left-out obligation that still fits (see the module docstring)."""
    kept = set(range(len(obligations)) if start is None else start)
    balance = _balances(obligations, funded, sorted(kept))
    out: dict[str, list[tuple[Decimal, int]]] = {}  # payer -> (amount, index), sorted
    for i in sorted(kept):
        out.setdefault(obligations[i].payer, []).append((obligations[i].amount, i))
    for payments in out.values():
        payments.sort()
    queue = deque(sorted(b for b, v in balance.items() if v < 0))
    while queue:
        bank = queue.popleft()
        payments = out.get(bank, [])
        while balance[bank] < 0:  # never empties `payments`: funded + receipts >= 0
            deficit = -balance[bank]
            # the smallest payment covering the whole deficit, else the largest
            k = bisect_left(payments, deficit, key=lambda p: p[0])
            amount, i = payments.pop(k if k < len(payments) else -1)
            kept.discard(i)
            balance[bank] += amount
            payee = obligations[i].payee
            was_ok = balance[payee] >= 0
            balance[payee] -= amount
            if was_ok and balance[payee] < 0:
                queue.append(payee)
    # Add back, largest first: only the payer's balance can fall, the payee's rises.
    left_out = [i for i in range(len(obligations)) if i not in kept]
    for i in sorted(left_out, key=lambda i: (-obligations[i].amount, i)):
        o = obligations[i]
        if balance[o.payer] >= o.amount:
            balance[o.payer] -= o.amount
            balance[o.payee] += o.amount
            kept.add(i)
    return sorted(kept)
