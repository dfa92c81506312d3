"""The coordinator's metadata sampler: leader, replicas and ISR of every partition of the run's
topic, a few times a second, in a thread of the coordinating process (never in a producer, whose
timing it would disturb). Its samples feed the failover figures (bench/analysis/failover.py):
when metadata showed a new leader, under-replicated partitions and ISR sizes per second.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.broker.roles import topic_state
from streamstore.errors import StreamStoreError

# Four samples a second: a new leader is seen within 250 ms of the metadata showing it.
SAMPLE_EVERY_S = 0.25
# One sample may wait this long for an answer while a node is down (the next one starts late).
SAMPLE_TIMEOUT_S = 2.0


class MetadataSampler:
    """`samples`: (t_s from t0, {partition: (leader, replicas, isr)}); a sample the cluster did not
    answer is not taken (`missed` counts them), never guessed."""

    def __init__(self, admin, topic: str, t0_perf_s: float, every_s: float = SAMPLE_EVERY_S):
        self.admin = admin
        self.topic = topic
        self.t0_perf_s = t0_perf_s
        self.every_s = every_s
        self.samples: list[tuple[float, dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]]] = []
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metadata-sampler", daemon=True)

    def start(self) -> MetadataSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=SAMPLE_TIMEOUT_S + 5)

    def _run(self) -> None:
        next_s = time.perf_counter()
        while not self._stop.is_set():
            t_s = time.perf_counter() - self.t0_perf_s
            try:
                state = topic_state(self.admin, self.topic, timeout_s=SAMPLE_TIMEOUT_S)
                self.samples.append((round(t_s, 3), {p: (s.leader, s.replicas, s.isr) for p, s in state.items()}))
            except StreamStoreError:
                self.missed += 1
            next_s += self.every_s
            self._stop.wait(max(0.0, next_s - time.perf_counter()))

    def to_dict(self) -> dict[str, Any]:
        return {"every_s": self.every_s, "missed": self.missed,
                "samples": [{"t_s": t_s, "partitions": {str(p): {"leader": leader, "replicas": list(replicas), "isr": list(isr)}
                                                          for p, (leader, replicas, isr) in sorted(state.items())}}
                            for t_s, state in self.samples]}
