"""The fallback of a clearing window whose net debtors did not all fund by the deadline.

Problem. Given the window's obligations and the funding each bank actually sent
(funded[b] >= 0; 0 for banks that sent nothing), settle the subset S of obligations of
largest total amount such that every bank's token balance stays >= 0:

    for every bank b:  funded[b] + (amounts of S received by b) - (amounts of S paid by b) >= 0

and roll the rest into the next window. This is a 0-1 multi-constraint knapsack
(NP-hard in general; one constraint row per bank).

Algorithm (`choose_settleable`).
1. If the whole window is covered, settle it all ("all").
2. Greedy: start from all obligations; while some bank is in deficit, roll one of its
   payments: preferably one whose payee can do without it (no new deficit), the
   smallest such covering the whole deficit, else the largest such; failing that, the
   smallest covering the deficit, else the largest. Rolling a payment can push its
   payee into deficit, so the loop goes on until no bank is; it terminates, as each step
   rolls one obligation and rolling everything is feasible (funded >= 0). Then add
   back, largest first, every rolled obligation its payer can still afford (settling
   one only ever helps its payee). This is the answer when scipy is missing, the
   solver fails, or the window exceeds MAX_EXACT_OBLIGATIONS ("greedy").
3. Exact, as a 0-1 integer program (scipy's HiGHS): x_o in {0, 1}, maximise
   sum a_o x_o subject to, per bank b that could end in deficit,
   sum_{o into b} a_o x_o - sum_{o out of b} a_o x_o >= -funded[b].
   Amounts become exact integers (minor units divided by their gcd; a row's bound is
   rounded exactly, its left side being an integer); floats are only the solver's
   representation. Large windows are more than HiGHS's presolve handles within the time
   limit (it overruns it: 40,000 obligations take > 5 s), so first:
   a. the LP relaxation (a network-flow-like LP, fast) gives an upper bound, row duals,
      and a rounded solution, repaired and filled by the greedy into a second incumbent;
   b. reduced-cost fixing (`_fix`, sound for any duals, evaluated in exact arithmetic):
      obligations that every optimal set settles, or none does, are fixed. If the bound
      already proves the incumbent within `mip_rel_gap`, stop;
   c. the MILP over the remaining free obligations (at most MAX_MILP_VARIABLES), with
      the remaining time and the same gap.
   "exact" means proven within `mip_rel_gap` (default 1e-6) of the optimum; pass 0 to
   prove it to the minor unit (the last minor units are a subset-sum problem that can
   take far longer). On a timeout, too many free obligations, or any failure, the
   best set found is returned as "greedy" (not proven).
4. Whatever the path, the chosen set is checked in exact Decimal arithmetic; a set that
   fails is repaired by the greedy (started from it), never returned as is.

`leftover[b]` = funded[b] + net_b(S) for each bank in `funded`: what its funding and what
it receives in S leave after S settles (the settlement mints only the funding S takes and
refunds the rest: activities/clearing.py).
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Literal

from deltran.domain.clearing.netting import _PRECISION, GrossObligation, check_obligation

log = logging.getLogger(__name__)

MAX_EXACT_OBLIGATIONS = 200_000
# Free variables (after fixing) beyond which the MILP is not attempted.
MAX_MILP_VARIABLES = 25_000
# Relative optimality gap the solver must prove. Proving optimality to the last minor
# unit is a subset-sum problem that can take HiGHS far longer than the deadline even on
# windows of a few dozen obligations with random amounts, and what is not settled only
# rolls into the next window (1e-6 of a 500M window is 500).
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
    obligations: Sequence[GrossObligation],
    funded: Mapping[str, Decimal],
    *,
    time_limit_s: float = 5.0,
    mip_rel_gap: float = MIP_REL_GAP,
    method: Literal["auto", "greedy"] = "auto",
) -> FallbackResult:
    """The largest-value set of obligations the fundings received can cover (see the
    module docstring). Amounts and fundings of one currency.

    `time_limit_s` bounds the solver (HiGHS may overrun it somewhat; the Python work
    around it adds a little). `mip_rel_gap=0` asks for optimality to the minor unit (may
    time out). `method="greedy"` skips the solver (tests, comparisons)."""
    _check(obligations, funded)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        everything = list(range(len(obligations)))
        if _feasible(obligations, funded, everything):
            return _result(obligations, funded, everything, "all")
        greedy = _greedy(obligations, funded)
        if method == "greedy" or len(obligations) > MAX_EXACT_OBLIGATIONS:
            return _result(obligations, funded, greedy, "greedy")
        solved, proven = _exact(obligations, funded, greedy, time_limit_s, mip_rel_gap)
        if not _feasible(obligations, funded, solved):
            log.warning("fallback: the solver's set fails the exact check; repairing it greedily")
            solved, proven = _greedy(obligations, funded, start=solved), False
        # The solver starts from the greedy's answer: never worse than it, unless a
        # repair above lost value.
        best = solved if _value(obligations, solved) >= _value(obligations, greedy) else greedy
        return _result(obligations, funded, best, "exact" if proven else "greedy")


# --------------------------------------------------------------------------- checks


def _check(obligations: Sequence[GrossObligation], funded: Mapping[str, Decimal]) -> None:
    seen: set[str] = set()
    for obligation in obligations:
        check_obligation(obligation)
        if obligation.id in seen:
            raise ValueError(f"obligation id {obligation.id!r} appears twice")
        seen.add(obligation.id)
    for bank, amount in funded.items():
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount < 0:
            raise ValueError(f"funding of {bank!r} must be a finite Decimal >= 0, got {amount!r}")


def _balances(
    obligations: Sequence[GrossObligation], funded: Mapping[str, Decimal], chosen: Iterable[int]
) -> dict[str, Decimal]:
    """funded[b] + net_b(chosen) for every bank named by `funded` or any obligation."""
    balance = {b: _ZERO for o in obligations for b in (o.payer, o.payee)}
    balance.update(funded)
    for i in chosen:
        o = obligations[i]
        balance[o.payer] -= o.amount
        balance[o.payee] += o.amount
    return balance


def _feasible(obligations: Sequence[GrossObligation], funded: Mapping[str, Decimal], chosen: Sequence[int]) -> bool:
    return all(b >= 0 for b in _balances(obligations, funded, chosen).values())


def _value(obligations: Sequence[GrossObligation], chosen: Sequence[int]) -> Decimal:
    return sum((obligations[i].amount for i in chosen), _ZERO)


def _result(
    obligations: Sequence[GrossObligation], funded: Mapping[str, Decimal], chosen: Sequence[int], method: Method
) -> FallbackResult:
    keep = set(chosen)
    balance = _balances(obligations, funded, sorted(keep))
    if any(b < 0 for b in balance.values()):
        raise RuntimeError("fallback: refusing to return a set the fundings do not cover")
    return FallbackResult(
        settle=tuple(o.id for i, o in enumerate(obligations) if i in keep),
        roll=tuple(o.id for i, o in enumerate(obligations) if i not in keep),
        settled_value=_value(obligations, sorted(keep)),
        method=method,
        leftover={bank: balance[bank] for bank in funded},
    )


# --------------------------------------------------------------------------- exact


@dataclass(frozen=True)
class _Model:
    """The integer program: per obligation j, x_j in {0, 1}, value amounts[j]; per row r
    (a bank that could end in deficit): sum_in a x - sum_out a x >= -bound[r]."""

    amounts: list[int]  # minor units / g
    payer_row: list[int]  # row of the payer, -1 if its constraint cannot bind
    payee_row: list[int]  # row of the payee, -1 likewise
    bound: list[int]  # floor(funded / g) per row
    unit: float  # the solver sees amounts / unit (1.0 unless amounts exceed 2**40)


def _model(obligations: Sequence[GrossObligation], funded: Mapping[str, Decimal]) -> _Model:
    n = len(obligations)
    funders = list(funded)
    ints = _integers([o.amount for o in obligations] + [funded[b] for b in funders])
    amounts, funding = ints[:n], dict(zip(funders, ints[n:], strict=True))
    # Dividing by the amounts' gcd g is exact: a row's left side stays an integer, so
    # `>= -F/g` is the same constraint as `>= -floor(F/g)`.
    g = math.gcd(*amounts)
    amounts = [a // g for a in amounts]
    outgoing: dict[str, int] = {}
    for o, a in zip(obligations, amounts, strict=True):
        outgoing[o.payer] = outgoing.get(o.payer, 0) + a
    # A bank whose funding covers all it pays can never be in deficit: no row.
    rows = {b: r for r, b in enumerate(b for b in outgoing if funding.get(b, 0) // g < outgoing[b])}
    bound = [funding.get(b, 0) // g for b in rows]
    return _Model(
        amounts=amounts,
        payer_row=[rows.get(o.payer, -1) for o in obligations],
        payee_row=[rows.get(o.payee, -1) for o in obligations],
        bound=bound,
        # Integers up to 2**40 are exact in a float and well inside HiGHS's ranges (it
        # rejects coefficients >= 1e15). Beyond that (tens of billions with decimals)
        # scale down: the answer may be a hair off, and the exact check catches that.
        unit=max(1.0, max(amounts + bound) / 2.0**40),
    )


def _integers(values: list[Decimal]) -> list[int]:
    """Decimals as exact integers, all scaled by 10**(most decimals found)."""
    decimals = max((-e for v in values if isinstance(e := v.as_tuple().exponent, int) and e < 0), default=0)
    return [int(v.scaleb(decimals)) for v in values]


def _exact(
    obligations: Sequence[GrossObligation],
    funded: Mapping[str, Decimal],
    incumbent: list[int],
    time_limit_s: float,
    mip_rel_gap: float,
) -> tuple[list[int], bool]:
    """The best set found and whether it is proven within `mip_rel_gap` of the optimum.
    `incumbent` is a feasible set (the greedy's). Never raises."""
    try:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, linprog, milp
        from scipy.sparse import csr_array
    except ImportError:
        log.warning("fallback: scipy is not installed; using the greedy")
        return incumbent, False
    deadline = time.monotonic() + time_limit_s
    try:
        model = _model(obligations, funded)
        n, m, unit = len(model.amounts), len(model.bound), model.unit

        def matrix(cols: list[int], lower: list[int]) -> tuple[list[LinearConstraint], list[int]]:
            """The rows over the columns `cols`, each `>= lower[r]`, leaving out rows that
            cannot be violated; and the row numbers kept."""
            index = {j: k for k, j in enumerate(cols)}
            entries: list[tuple[int, int, float]] = []
            most_out = [0] * m
            for j in cols:
                a, p, q = model.amounts[j], model.payer_row[j], model.payee_row[j]
                if p >= 0:
                    entries.append((p, index[j], -a / unit))
                    most_out[p] += a
                if q >= 0:
                    entries.append((q, index[j], a / unit))
            keep = [r for r in range(m) if lower[r] > -most_out[r]]
            if not keep:
                return [], keep
            renumber = {r: k for k, r in enumerate(keep)}
            entries = [(renumber[r], c, v) for r, c, v in entries if r in renumber]
            data = np.array([v for _, _, v in entries])
            rows = np.array([r for r, _, _ in entries], dtype=np.int64)
            cols_ = np.array([c for _, c, _ in entries], dtype=np.int64)
            a_matrix = csr_array((data, (rows, cols_)), shape=(len(keep), len(cols)))
            return [LinearConstraint(a_matrix, np.array([lower[r] / unit for r in keep]), np.inf)], keep

        everything = list(range(n))
        constraints, kept_rows = matrix(everything, [-b for b in model.bound])
        # 1. The LP relaxation: an upper bound, duals for fixing, and a rounded answer.
        lp = linprog(
            -np.array([a / unit for a in model.amounts]),
            A_ub=-constraints[0].A if constraints else None,
            b_ub=-constraints[0].lb if constraints else None,
            bounds=(0, 1),
            method="highs",
            options={"time_limit": max(0.1, deadline - time.monotonic())},
        )
        pi = [0.0] * m
        if lp.status == 0 and constraints:
            for r, marginal in zip(kept_rows, lp.ineqlin.marginals, strict=True):
                pi[r] = max(0.0, -float(marginal))
            rounded = _greedy(obligations, funded, start=[j for j in everything if lp.x[j] > 1 - 1e-6])
            if _total(model, rounded) > _total(model, incumbent):
                incumbent = rounded
        best = _total(model, incumbent)
        # 2. Reduced-cost fixing, in exact arithmetic (see _fix).
        fixed_in, free, gap = _fix(model, pi, best)
        log.debug(
            "fallback: %d obligations, %d rows; LP bound - incumbent = %s; %d fixed in, %d free",
            n,
            m,
            float(gap),
            len(fixed_in),
            len(free),
        )
        if gap < 1 or gap <= mip_rel_gap * best:
            return incumbent, True
        if len(free) > MAX_MILP_VARIABLES or deadline - time.monotonic() <= 0:
            return incumbent, False
        # 3. The integer program over the free obligations, the fixed ones settled.
        lower = [-b for b in model.bound]
        for j in fixed_in:
            if model.payer_row[j] >= 0:
                lower[model.payer_row[j]] += model.amounts[j]
            if model.payee_row[j] >= 0:
                lower[model.payee_row[j]] -= model.amounts[j]
        # HiGHS's relative gap is on the free part's value z_free <= free_value; so its
        # absolute gap is <= free_gap * free_value = mip_rel_gap * best <= mip_rel_gap * optimum.
        free_gap = min(0.5, mip_rel_gap * best / max(1, _total(model, free)))
        result = milp(
            c=-np.array([model.amounts[j] / unit for j in free]),
            integrality=np.ones(len(free)),
            bounds=Bounds(0, 1),
            constraints=matrix(free, lower)[0],
            options={
                "time_limit": max(0.1, deadline - time.monotonic()),
                "mip_rel_gap": free_gap,
            },
        )
    except Exception:  # a fallback must not fail: the greedy still answers
        log.exception("fallback: the solver failed; using the greedy")
        return incumbent, False
    if result.x is None:
        log.warning("fallback: the MILP solver found no solution (%s); using the greedy", result.message)
        return incumbent, False
    chosen = sorted(fixed_in + [j for k, j in enumerate(free) if result.x[k] > 0.5])
    proven = result.status == 0
    # (an incumbent better than a set proven within the gap is within the gap too)
    return (chosen if _total(model, chosen) >= best else incumbent), proven


def _total(model: _Model, chosen: Iterable[int]) -> int:
    return sum(model.amounts[j] for j in chosen)


def _fix(model: _Model, pi: list[float], incumbent_value: int) -> tuple[list[int], list[int], Fraction]:
    """Reduced-cost fixing. For any multipliers pi >= 0 and any feasible x (Lagrangian
    relaxation, weak duality):

        value(x) <= U - sum_{r_j > 0} r_j (1 - x_j) - sum_{r_j < 0} |r_j| x_j,
        r_j = a_j (1 + pi[payee] - pi[payer]),   U = sum_{r_j > 0} r_j + sum_b pi_b F_b.

    So with G = U - value(incumbent): an obligation with r_j > G is settled in every
    optimal set (leaving it out would bring the value below the incumbent's), and one
    with r_j < -G is in none. The rest is free. pi comes from the LP's duals (floats);
    the bound holds for any pi >= 0, and it is evaluated exactly (Fractions), so the
    fixing is sound whatever the LP's accuracy. Returns (fixed in, free, G)."""
    pif = [Fraction(p) for p in pi] + [Fraction(0)]  # index -1: a bank without a row
    factors: dict[tuple[int, int], Fraction] = {}
    # pif has one more entry than there are rows (index -1): zip stops at the last row.
    upper = sum((p * b for p, b in zip(pif, model.bound, strict=False)), Fraction(0))
    per_pair: dict[tuple[int, int], int] = {}
    for a, p, q in zip(model.amounts, model.payer_row, model.payee_row, strict=True):
        per_pair[(p, q)] = per_pair.get((p, q), 0) + a
    for (p, q), total in per_pair.items():
        factor = factors[(p, q)] = 1 + pif[q] - pif[p]
        if factor > 0:
            upper += factor * total
    gap = upper - incumbent_value  # >= 0 by weak duality
    # r_j > G  <=>  a_j > G / factor  <=>  a_j > floor(G / factor) for integer a_j
    thresholds = {pair: (f, math.floor(gap / abs(f))) for pair, f in factors.items() if f != 0}
    fixed_in: list[int] = []
    free: list[int] = []
    for j, (a, p, q) in enumerate(zip(model.amounts, model.payer_row, model.payee_row, strict=True)):
        entry = thresholds.get((p, q))
        if entry is None or a <= entry[1]:
            free.append(j)
        elif entry[0] > 0:
            fixed_in.append(j)
    return fixed_in, free, gap


# --------------------------------------------------------------------------- greedy


def _greedy(
    obligations: Sequence[GrossObligation], funded: Mapping[str, Decimal], start: Iterable[int] | None = None
) -> list[int]:
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
            amount, i = payments.pop(_pick(payments, -balance[bank], balance, obligations))
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


_SCAN = 64  # payments looked at on each side of the deficit: O(1) per removal


def _pick(
    payments: list[tuple[Decimal, int]],
    deficit: Decimal,
    balance: dict[str, Decimal],
    obligations: Sequence[GrossObligation],
) -> int:
    """Which of a deficit bank's payments (sorted by amount) to roll. Preferably one its
    payee can do without (balance >= amount: no new deficit, no cascade): the smallest
    such covering the whole deficit, else the largest such below it; when none is near,
    the smallest covering the deficit, else the largest."""
    k = bisect_left(payments, deficit, key=lambda p: p[0])
    for idx in range(k, min(len(payments), k + _SCAN)):
        amount, i = payments[idx]
        if balance[obligations[i].payee] >= amount:
            return idx
    for idx in range(k - 1, max(-1, k - 1 - _SCAN), -1):
        amount, i = payments[idx]
        if balance[obligations[i].payee] >= amount:
            return idx
    return k if k < len(payments) else len(payments) - 1
