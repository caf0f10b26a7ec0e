"""The serving benchmark's table and the ratios the serving issue states its goals in.

Rows are keyed by (server, clients); a server that could not run has a reason
instead of rows. Ratios are always between servers measured in the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Row = dict[str, float]
Table = dict[tuple[str, int], Row]


@dataclass(frozen=True)
class Goal:
    """One goal: `value` (a ratio) against `target`; higher is better unless `lower_better`."""

    name: str
    value: float
    target: float
    lower_better: bool = False

    @property
    def met(self) -> bool | None:
        """None when the ratio could not be measured (a peer did not run)."""
        if math.isnan(self.value):
            return None
        return self.value <= self.target if self.lower_better else self.value >= self.target


def _get(table: Table, server: str, clients: int, key: str) -> float:
    row = table.get((server, clients))
    return row[key] if row else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def goals(
    table: Table, high: int = 16, low: int | None = 1, requested: set[str] | None = None
) -> list[Goal]:
    """The issue's goals for every Hanlin variant in the table.

    At `high` clients: output tok/s >= 4x naive HF, >= 2.5x llama.cpp, >= 1x vLLM (fp32
    and bf16),
    and TTFT p50 no worse than naive HF. At `low` clients the int4 variant's
    output tok/s >= 1x llama.cpp (skipped when low is None). Peers not in `requested` (default: all) are
    left out; a requested peer that did not run gives an unmeasured (NaN) goal.
    """
    hanlins = sorted({s for s, _ in table if s == "hanlin" or s.startswith("hanlin-")})

    def wanted(peer: str) -> bool:
        return requested is None or peer in requested

    out = []
    for h in hanlins:
        tok = _get(table, h, high, "tok_s")
        peers = (("naive-hf", 4.0), ("llama-cpp", 2.5), ("vllm", 1.0), ("vllm-bf16", 1.0))
        for peer, target in peers:
            if wanted(peer):
                value = _ratio(tok, _get(table, peer, high, "tok_s"))
                out.append(Goal(f"{h} / {peer} output tok/s @{high}", value, target))
        if wanted("naive-hf"):
            naive = _get(table, "naive-hf", high, "ttft_p50")
            ttft = _ratio(_get(table, h, high, "ttft_p50"), naive)
            out.append(Goal(f"{h} / naive-hf TTFT p50 @{high}", ttft, 1.0, lower_better=True))
    if low is not None and "hanlin-int4" in hanlins and wanted("llama-cpp"):
        value = _ratio(
            _get(table, "hanlin-int4", low, "tok_s"), _get(table, "llama-cpp", low, "tok_s")
        )
        out.append(Goal(f"hanlin-int4 / llama-cpp output tok/s @{low}", value, 1.0))
    return out


def render(table: Table, skipped: dict[str, str], goal_list: list[Goal]) -> str:
    """The table (with each row's tok/s over naive HF at the same concurrency) and the goals."""
    head = (
        f"{'server':<13}{'clients':>8}{'reqs':>6}{'req/s':>8}{'tok/s':>8}{'TTFT p50':>10}"
        f"{'TTFT p99':>10}{'TPOT p50':>10}{'TPOT p99':>10}{'vs naive':>10}{'tok miss':>9}"
    )
    lines = [head]
    for (name, clients), m in table.items():
        ratio = _ratio(m["tok_s"], _get(table, "naive-hf", clients, "tok_s"))
        vs = "-" if math.isnan(ratio) else f"{ratio:.2f}x"
        lines.append(
            f"{name:<13}{clients:>8}{int(m['requests']):>6}{m['req_s']:>8.2f}{m['tok_s']:>8.1f}"
            f"{m['ttft_p50']:>10.3f}{m['ttft_p99']:>10.3f}{m['tpot_p50']:>10.4f}"
            f"{m['tpot_p99']:>10.4f}{vs:>10}{int(m['token_mismatches']):>9}"
        )
    for name, reason in skipped.items():
        lines.append(f"{name:<13} {reason}")
    lines.append("")
    lines.append("goals (ratios measured in this run):")
    for g in goal_list:
        mark = {True: "met", False: "NOT met", None: "n/a"}[g.met]
        sign = "<=" if g.lower_better else ">="
        lines.append(f"  {g.name:<46}{g.value:>8.2f}  (goal {sign} {g.target:g})  {mark}")
    return "\n".join(lines)
