"""The broker's own metrics each second of a run, read from Prometheus endpoints by the resource
sampler's thread (bench/core/resources.py), on the same seconds as the CPU and RSS figures.

Endpoints: each embedded node's JMX exporter (bench/broker/exporter.py records its URL in the
node's state dir), or the one URL a user gives for a broker this tool did not start
(`--broker-metrics-url`). An endpoint that does not answer when the run starts is not read again
(one warning; its figures are null with the reason, never 0); one that stops answering during
the run (a node a fault took down) has null seconds until it answers again.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from bench.analysis.broker_metrics import SCRAPED_NAMES, counter_growth, node_summary, parse_exposition, per_second
from bench.broker.exporter import EXPORTER_VERSION, exporter_endpoint
from bench.results.metrics import BROKER_METRIC_SERIES, broker_series_key

# The sampler thread waits for a scrape: a paused node must not hold its CPU samples back for
# the next second, but a broker JVM on a crowded machine answers in up to ~0.3 s.
SCRAPE_TIMEOUT_S = 0.8
# The first scrape, by the sampler thread as the run starts (the base of the first second's
# rates; its first sample is due a second later): an endpoint that does not answer it is not
# read during the run. The embedded node's exporter was warmed when the node started.
FIRST_SCRAPE_TIMEOUT_S = 1.0
# The last scrape, after the run: nothing waits for it but the result.
LAST_SCRAPE_TIMEOUT_S = 5.0
URL_NODE = "broker"


def _query(url: str) -> str:
    """The URL asking only for the names a run reads (`name[]=`, which Prometheus' client
    libraries honour and other servers ignore)."""
    parts = urllib.parse.urlsplit(url)
    names = urllib.parse.urlencode([("name[]", name) for name in SCRAPED_NAMES])
    return urllib.parse.urlunsplit(parts._replace(query="&".join(filter(None, [parts.query, names]))))


def scrape(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> dict[str, float]:
    """The raw figures of one scrape; OSError (URLError, a timeout) or ValueError (not the
    Prometheus text format) when there are none."""
    with urllib.request.urlopen(_query(url), timeout=timeout_s) as response:
        return parse_exposition(response.read().decode("utf-8", errors="replace"))


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason if isinstance(error.reason, Exception) else error
    return str(error) or type(error).__name__


class BrokerMetrics:
    """Scrapes per second and the figures they give: `rows[second][node]` (BROKER_METRIC_SERIES keys)."""

    def __init__(self, endpoints: Mapping[str, str], not_measured: Mapping[str, str], source: str):
        self.endpoints = dict(endpoints)
        self.not_measured = dict(not_measured)
        self.source = source
        self.rows: dict[int, dict[str, dict[str, float | None]]] = {}
        self.scrape_ms: list[float] = []
        self.failed_scrapes: dict[str, int] = {}
        self._last: dict[str, tuple[float, dict[str, float]]] = {}
        # Each endpoint's first and newest scrape: the bytes in over the whole run, exactly.
        self._first: dict[str, dict[str, float]] = {}
        self._newest: dict[str, dict[str, float]] = {}

    @classmethod
    def of_embedded(cls, embedded) -> BrokerMetrics:
        """Each node's exporter, as its state dir records it."""
        endpoints, not_measured = {}, {}
        for node in embedded.nodes:
            url, reason = exporter_endpoint(node.config.state_dir)
            if url is None:
                not_measured[f"broker-node{node.node_id}"] = reason
            else:
                endpoints[f"broker-node{node.node_id}"] = url
        return cls(endpoints, not_measured, f"JMX exporter {EXPORTER_VERSION} on each embedded node")

    def begin(self) -> BrokerMetrics:
        """The first scrape of each endpoint (the counters the first second's rates start from);
        an endpoint that does not answer now is dropped, with its reason."""
        for name, url in list(self.endpoints.items()):
            try:
                self._last[name] = (time.perf_counter(), scrape(url, FIRST_SCRAPE_TIMEOUT_S))
                self._first[name] = self._newest[name] = self._last[name][1]
            except (OSError, ValueError) as error:
                del self.endpoints[name]
                self.not_measured[name] = f"{url} did not answer at run start: {_reason(error)}"
        return self

    def end(self) -> None:
        """One last scrape of each endpoint after the run (the sampler has stopped): the whole
        run's counter growth must not end at a second whose scrape timed out."""
        for name, url in self.endpoints.items():
            try:
                self._newest[name] = scrape(url, LAST_SCRAPE_TIMEOUT_S)
            except (OSError, ValueError):
                pass  # the newest answer stands

    def sample(self, second: int) -> None:
        began = time.perf_counter()
        row = {}
        for name, url in self.endpoints.items():
            try:
                raw = scrape(url)
            except (OSError, ValueError):
                self.failed_scrapes[name] = self.failed_scrapes.get(name, 0) + 1
                self._last.pop(name, None)  # the next rate starts again from the next answer
                row[name] = per_second(None, None, 0.0)
                continue
            now = time.perf_counter()
            before = self._last.get(name)
            row[name] = per_second(before[1] if before else None, raw, now - before[0] if before else 0.0)
            self._last[name] = (now, raw)
            self._newest[name] = raw
        if self.endpoints:
            self.scrape_ms.append(round(1000 * (time.perf_counter() - began), 2))
        self.rows[second] = row

    def series(self, seconds: int) -> dict[str, Any]:
        """result["series"] keys `<metric>_by_node`: one list per endpoint, null where not read."""
        rows = [self.rows.get(second) or {} for second in range(seconds)]
        return {broker_series_key(key): {name: [(row.get(name) or {}).get(key) for row in rows] for name in self.endpoints}
                for key in BROKER_METRIC_SERIES}

    def warnings(self) -> list[str]:
        return [f"broker metrics not measured for {name}: {reason}" for name, reason in self.not_measured.items()
                if name == URL_NODE]

    def section(self, series: Mapping[str, Any], window: Sequence[int]) -> dict[str, Any]:
        """result["resources"]["broker_metrics"]: per node over the measured window, a summary
        (bytes in summed over the nodes, the least idle node's request handlers), the scrape
        cost, and each endpoint that was not read with its reason."""
        nodes = {name: {"url": url, "failed_scrapes": self.failed_scrapes.get(name, 0),
                        "bytes_in_run": counter_growth(self._first.get(name), self._newest.get(name), "bytes_in"),
                        **node_summary(series, name, window)} for name, url in self.endpoints.items()}
        bytes_in = [node["bytes_in_per_s_mean"] for node in nodes.values() if node["bytes_in_per_s_mean"] is not None]
        idle = {name: node["request_handler_idle_percent_mean"] for name, node in nodes.items()
                if node["request_handler_idle_percent_mean"] is not None}
        least_idle = min(idle, key=idle.get) if idle else None
        summary = {"bytes_in_per_s_mean": round(sum(bytes_in), 1) if bytes_in else None,
                   "least_idle_node": least_idle,
                   "request_handler_idle_percent_mean": idle.get(least_idle) if least_idle else None}
        scrape_ms = self.scrape_ms
        return {"source": self.source, "nodes": nodes, "summary": summary, "not_measured": dict(self.not_measured),
                "scrape_ms_mean": round(sum(scrape_ms) / len(scrape_ms), 2) if scrape_ms else None,
                "scrape_ms_max": max(scrape_ms, default=None)}


def broker_metrics(embedded, metrics_url: str | None) -> BrokerMetrics:
    """The endpoints of a run: the URL given (it wins: the user asked for it), else the embedded
    broker's exporters, else none, with the reason."""
    if metrics_url:
        return BrokerMetrics({URL_NODE: metrics_url}, {}, f"--broker-metrics-url {metrics_url}")
    if embedded is not None:
        return BrokerMetrics.of_embedded(embedded)
    return BrokerMetrics({}, {URL_NODE: "not a broker started by this tool, and no --broker-metrics-url given"}, "none")
