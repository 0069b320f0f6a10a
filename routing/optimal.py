"""Optimal mode: the cheapest set of locations that covers an order, as a small MIP (HiGHS).

Pure: plain numbers in, chosen indices out; no Django, no I/O. `routing.engine` prepares the
inputs, compares the result with its greedy plan and keeps whichever costs less.

The model. For candidate j with per-shipment cost c_j and units u_ij of item i it can give
(already capped at the order's demand d_i):

    minimise    Σ_j (c_j + split_penalty) · open_j − split_penalty
    subject to  Σ_j u_ij · open_j ≥ d_i          for every item i
                1 ≤ Σ_j open_j ≤ max_locations
                open_j ∈ {0, 1}

This is the "binary open_j, x_ij ≤ available_ij · open_j, Σ_j x_ij = d_i" formulation with the
x_ij projected out: the quantities do not enter the cost, and for a fixed set of open locations
integral x_ij exist iff Σ_j u_ij ≥ d_i (a transportation problem with integral data). The engine
then assigns quantities line by line to the chosen locations, so the model stays at one
binary per location and one row per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

try:  # an optional dependency: without it the engine keeps the greedy plan and says so
    import highspy
except ImportError:  # pragma: no cover - exercised by monkeypatching AVAILABLE in tests
    highspy = None

AVAILABLE = highspy is not None
SOLVER = f"HiGHS {highspy.Highs().version()}" if highspy is not None else "HiGHS (not installed)"


@dataclass(frozen=True)
class CoverResult:
    status: str  # "optimal" | "time_limit" | "infeasible" | "unavailable" | "error: …"
    chosen: tuple[int, ...]  # indices into the inputs, ascending; empty unless a solution was found
    objective: float | None  # Σ chosen costs + split_penalty · (len(chosen) − 1)


def min_cost_cover(
    costs: Sequence[float],
    cover: Sequence[Sequence[int]],
    demand: Sequence[int],
    *,
    max_locations: int,
    split_penalty: float,
    start: Sequence[int] = (),
    time_limit: float = 1.0,
) -> CoverResult:
    """The cheapest set of at most `max_locations` candidates covering `demand`.

    `costs[j]` is candidate j's cost per shipment, `cover[j][i]` the units of item i it can
    give. `start`, when given, is a known feasible set (the greedy plan) handed to the solver
    as its first incumbent. Returns the chosen indices, or an empty tuple with the status.
    """
    if not AVAILABLE:
        return CoverResult("unavailable", (), None)
    n, m = len(costs), len(demand)
    if n == 0 or max_locations < 1:
        return CoverResult("infeasible", (), None)

    start, index, value = [0], [], []
    for j in range(n):
        row = cover[j]
        for i in range(m):
            if row[i] > 0:
                index.append(i)
                value.append(float(row[i]))
        index.append(m)  # the location-count row
        value.append(1.0)
        start.append(len(index))

    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = m + 1
    lp.col_cost_ = [float(c) + split_penalty for c in costs]
    lp.col_lower_ = [0.0] * n
    lp.col_upper_ = [1.0] * n
    lp.row_lower_ = [float(d) for d in demand] + [1.0]
    lp.row_upper_ = [highspy.kHighsInf] * m + [float(max_locations)]
    lp.offset_ = -float(split_penalty)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = m + 1
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = index
    lp.a_matrix_.value_ = value
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.setOptionValue("mip_abs_gap", 1e-9)
    # Feasibility jump costs ~9 ms of fixed start-up per solve; these models are tiny and a
    # greedy incumbent is passed in, so it buys nothing here.
    h.setOptionValue("mip_heuristic_run_feasibility_jump", False)
    h.passModel(lp)
    if start:
        picked = set(start)
        sol = highspy.HighsSolution()
        sol.col_value = [1.0 if j in picked else 0.0 for j in range(n)]
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    status = h.getModelStatus()
    ms = highspy.HighsModelStatus
    if status == ms.kInfeasible:
        return CoverResult("infeasible", (), None)
    if status not in (ms.kOptimal, ms.kTimeLimit):
        return CoverResult(f"error: {h.modelStatusToString(status)}", (), None)
    values = h.getSolution().col_value
    chosen = tuple(j for j in range(n) if values[j] > 0.5)
    if not chosen or any(sum(cover[j][i] for j in chosen) < demand[i] for i in range(m)):
        # time limit without an incumbent, or a solution we cannot verify: treat as none
        return CoverResult("time_limit" if status == ms.kTimeLimit else "infeasible", (), None)
    objective = sum(costs[j] for j in chosen) + split_penalty * (len(chosen) - 1)
    return CoverResult("optimal" if status == ms.kOptimal else "time_limit", chosen, objective)
