"""The metrics contract: every Prometheus metric Hanlin exports, in one place.

Dashboards and alerts (helm/hanlin) may name only these series, and a unit test
checks that this list equals the metric definitions in the code (name, type,
labels, help, defining module), so a metric cannot be added, renamed or
relabelled without the contract, and therefore the monitoring, noticing.

Names are as Prometheus stores them: a counter's name carries its `_total`
suffix (prometheus_client appends it when the code omits it), histograms are
listed by their base name and expose `_bucket`, `_sum` and `_count` series.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MetricType(StrEnum):
    """The Prometheus metric types Hanlin uses."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"


@dataclass(frozen=True)
class Metric:
    """One exported metric family."""

    name: str
    type: MetricType
    help: str
    module: str  # the module that defines it: where to look when it changes
    labels: tuple[str, ...] = ()

    def series(self) -> frozenset[str]:
        """The series names this family puts into Prometheus (what PromQL may name)."""
        if self.type is MetricType.COUNTER:
            base = self.name.removesuffix("_total")
            return frozenset({self.name, f"{base}_created"})
        if self.type is MetricType.HISTOGRAM:
            return frozenset(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count", "_created"))
        if self.type is MetricType.SUMMARY:
            return frozenset(
                {self.name, *(f"{self.name}{s}" for s in ("_sum", "_count", "_created"))}
            )
        return frozenset({self.name})


_C, _G, _H = MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM
_SERVE = "hanlin.serve.metrics"
_TRAIN = "hanlin.train.progress"
_EVAL = "hanlin.eval.progress"
_AGENT = "hanlin.agent.service.metrics"
_OPERATOR = "hanlin_operator.metrics"

METRICS: tuple[Metric, ...] = (
    # --- operator (hanlin operator run; /metrics beside /healthz) ---
    Metric("hanlin_operator_reconciles_total", _C, "Reconciles by kind and result (ok, waiting, gated, gone, error).", _OPERATOR, ("kind", "result")),
    Metric("hanlin_operator_reconcile_duration_seconds", _H, "Time one reconcile took.", _OPERATOR, ("kind",)),
    Metric("hanlin_operator_resources", _G, "Resources by kind and phase.", _OPERATOR, ("kind", "phase")),
    # --- serving engine (hanlin serve; one registry per engine) ---
    Metric("hanlin_time_to_first_token_seconds", _H, "Time from arrival to the first generated token.", _SERVE),
    Metric("hanlin_time_per_output_token_seconds", _H, "Mean time between output tokens of a finished request.", _SERVE),
    Metric("hanlin_e2e_request_latency_seconds", _H, "Time from arrival to finish.", _SERVE),
    Metric("hanlin_num_requests_running", _G, "Sequences running.", _SERVE),
    Metric("hanlin_num_requests_waiting", _G, "Sequences queued.", _SERVE),
    Metric("hanlin_kv_cache_usage_ratio", _G, "Fraction of KV blocks in use.", _SERVE),
    Metric("hanlin_prompt_tokens_total", _C, "Prompt tokens received.", _SERVE),
    Metric("hanlin_generation_tokens_total", _C, "Tokens generated.", _SERVE),
    Metric("hanlin_num_preemptions_total", _C, "Sequences preempted for lack of KV blocks.", _SERVE),
    Metric("hanlin_requests_finished_total", _C, "Finished sequences by reason.", _SERVE, ("reason",)),
    Metric("hanlin_requests_aborted_total", _C, "Sequences aborted.", _SERVE),
    Metric("hanlin_prefix_cache_queries_total", _C, "Prompt tokens looked up in the prefix cache.", _SERVE),
    Metric("hanlin_prefix_cache_hits_total", _C, "Prompt tokens found in the prefix cache (not computed again).", _SERVE),
    Metric("hanlin_requests_rejected_total", _C, "Requests refused by code.", _SERVE, ("code",)),
    # --- training (hanlin train, rank 0, HANLIN_METRICS_PORT) ---
    Metric("hanlin_train_step", _G, "Optimizer steps done", _TRAIN),
    Metric("hanlin_train_total_steps", _G, "Optimizer steps planned", _TRAIN),
    Metric("hanlin_train_loss", _G, "Training loss of the last step", _TRAIN),
    Metric("hanlin_train_learning_rate", _G, "Current learning rate", _TRAIN),
    Metric("hanlin_train_tokens_per_second", _G, "Training tokens per second, all processes", _TRAIN),
    Metric("hanlin_train_eta_seconds", _G, "Estimated seconds to the last step", _TRAIN),
    Metric("hanlin_train_tokens_total", _C, "Training tokens processed", _TRAIN),
    Metric("hanlin_train_checkpoints_total", _C, "Checkpoints published", _TRAIN),
    # --- evaluation (hanlin eval, one per shard worker) ---
    Metric("hanlin_eval_samples_total", _C, "Samples scored by this worker", _EVAL),
    Metric("hanlin_eval_samples_planned", _G, "Samples this worker must score", _EVAL),
    Metric("hanlin_eval_samples_per_second", _G, "Recent scoring throughput", _EVAL),
    # --- agents (hanlin agent) ---
    Metric("hanlin_agent_runs_total", _C, "Agent runs by final status.", _AGENT, ("status",)),
    Metric("hanlin_agent_steps_per_run", _H, "Tool steps one run took.", _AGENT),
    Metric("hanlin_agent_run_duration_seconds", _H, "Wall time of one run.", _AGENT),
    Metric("hanlin_agent_tool_calls_total", _C, "Tool calls by tool and outcome.", _AGENT, ("tool", "outcome")),
    Metric("hanlin_agent_tool_latency_seconds", _H, "Latency of one tool call.", _AGENT, ("tool",)),
    Metric("hanlin_agent_llm_tokens_total", _C, "LLM tokens by kind (prompt, completion).", _AGENT, ("kind",)),
)  # fmt: skip

# Series Prometheus itself writes for every scrape target; alerts may use them
# (an absent target is how "the operator is down" shows).
SCRAPE_SERIES: frozenset[str] = frozenset({"up", "scrape_duration_seconds"})


def metric(name: str) -> Metric:
    """The contract entry named NAME; KeyError names the unknown metric."""
    for m in METRICS:
        if m.name == name:
            return m
    raise KeyError(f"{name!r} is not in the Hanlin metrics contract")


def allowed_series() -> frozenset[str]:
    """Every series name a dashboard or alert may use."""
    names: set[str] = set(SCRAPE_SERIES)
    for m in METRICS:
        names |= m.series()
    return frozenset(names)


__all__ = ["METRICS", "SCRAPE_SERIES", "Metric", "MetricType", "allowed_series", "metric"]
