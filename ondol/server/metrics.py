"""Prometheus metrics: request counts and latencies observed by the routes, engine figures read at each scrape."""


from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ondol.server.state import ServerState




# --- metrics ------------------------------------------------------------------------------------

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                    20.0, 40.0, 80.0)
_E2E_BUCKETS = (0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                240.0, 480.0)
_ENDPOINTS = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"}


class Metrics:
    """Prometheus metrics of one app, in a registry of its own. Engine figures (queue lengths, KV
    cache, prefix cache) are read from ``engine.stats`` at each scrape."""

    def __init__(self, state: ServerState) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ondol_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("ondol_prompt_tokens", "Prompt tokens of engine requests", registry=r)
        self.generation_tokens = Counter("ondol_generation_tokens", "Tokens generated", registry=r)
        self.ttft = Histogram("ondol_time_to_first_token_seconds", "Time from arrival to the first token",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("ondol_inter_token_latency_seconds", "Time between successive tokens of a request",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e = Histogram("ondol_e2e_request_latency_seconds", "Time from arrival to the last token",
                             buckets=_E2E_BUCKETS, registry=r)
        r.register(_EngineCollector(state))

    def export(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterable[Any]:
        engine = self.state.engine
        s = engine.engine.stats if engine is not None else None
        get = (lambda name: getattr(s, name, 0) or 0) if s is not None else (lambda name: 0)
        total = get("num_kv_blocks")
        queries, hits = get("prefix_cache_queries"), get("prefix_cache_hits")
        yield GaugeMetricFamily("ondol_num_requests_waiting", "Requests waiting to be scheduled",
                                value=get("num_waiting"))
        yield GaugeMetricFamily("ondol_num_requests_running", "Requests being generated", value=get("num_running"))
        yield GaugeMetricFamily("ondol_kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1)",
                                value=get("num_kv_blocks_used") / total if total else 0.0)
        yield GaugeMetricFamily("ondol_kv_cache_blocks", "KV-cache blocks in the pool", value=total)
        yield GaugeMetricFamily("ondol_prefix_cache_hit_rate", "Prompt tokens found in the prefix cache / looked up",
                                value=hits / queries if queries else 0.0)
        yield CounterMetricFamily("ondol_prefix_cache_queries", "Prompt tokens looked up in the prefix cache",
                                  value=queries)
        yield CounterMetricFamily("ondol_prefix_cache_hits", "Prompt tokens found in the prefix cache", value=hits)
        yield CounterMetricFamily("ondol_num_preemptions", "Requests preempted for lack of KV-cache blocks",
                                  value=get("num_preemptions"))
        yield CounterMetricFamily("ondol_computed_tokens", "Tokens run through the model (prompt, decode, recompute)",
                                  value=get("num_computed_tokens") or get("num_prompt_tokens_computed"))
        yield GaugeMetricFamily("ondol_model_ready", "1 once the model is loaded and serving",
                                value=1 if self.state.phase == "ready" else 0)


class CountRequests:
    """ASGI middleware counting responses by endpoint and status (without wrapping the body, so
    streaming and disconnect detection are untouched)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in _ENDPOINTS else ("/v1/models" if path.startswith("/v1/models/") else "other")
        counted = False

        async def counting_send(message: dict) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                self.metrics.requests.labels(endpoint, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if not counted:
                self.metrics.requests.labels(endpoint, "500").inc()


