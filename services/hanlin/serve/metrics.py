"""Prometheus metrics of one engine (its own registry, so several engines can coexist)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)


class EngineMetrics:
    """TTFT / TPOT / end-to-end histograms, queue and cache gauges, token counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            "hanlin_time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "hanlin_time_per_output_token_seconds",
            "Mean time between output tokens of a finished request.",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "hanlin_e2e_request_latency_seconds",
            "Time from arrival to finish.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.running = Gauge("hanlin_num_requests_running", "Sequences running.", registry=r)
        self.waiting = Gauge("hanlin_num_requests_waiting", "Sequences queued.", registry=r)
        self.kv_usage = Gauge(
            "hanlin_kv_cache_usage_ratio", "Fraction of KV blocks in use.", registry=r
        )
        self.prompt_tokens = Counter("hanlin_prompt_tokens", "Prompt tokens received.", registry=r)
        self.generation_tokens = Counter(
            "hanlin_generation_tokens", "Tokens generated.", registry=r
        )
        self.preemptions = Counter(
            "hanlin_num_preemptions", "Sequences preempted for lack of KV blocks.", registry=r
        )
        self.finished = Counter(
            "hanlin_requests_finished", "Finished sequences by reason.", ["reason"], registry=r
        )
        self.aborted = Counter("hanlin_requests_aborted", "Sequences aborted.", registry=r)
        self.prefix_queries = Counter(
            "hanlin_prefix_cache_queries",
            "Prompt tokens looked up in the prefix cache.",
            registry=r,
        )
        self.prefix_hits = Counter(
            "hanlin_prefix_cache_hits",
            "Prompt tokens found in the prefix cache (not computed again).",
            registry=r,
        )
        self._prefix_seen = (0, 0)

    def set_state(self, running: int, waiting: int, kv_usage: float) -> None:
        """Update the gauges after a step."""
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)

    def prefix_cache(self, queried: int, hit: int) -> None:
        """Advance the prefix-cache counters to the scheduler's cumulative counts."""
        seen_q, seen_h = self._prefix_seen
        if queried > seen_q:
            self.prefix_queries.inc(queried - seen_q)
        if hit > seen_h:
            self.prefix_hits.inc(hit - seen_h)
        self._prefix_seen = (queried, hit)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))


class ServerMetrics:
    """What the server process counts itself: requests refused before reaching the engine."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rejected = Counter(
            "hanlin_requests_rejected",
            "Requests refused by code.",
            ["code"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
