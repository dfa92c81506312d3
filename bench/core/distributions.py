"""Message sizes and keys as distributions: the scenario fields `message_size` and `keys` given as a
table, checked with one clear line, and the pools the send path cycles through.

  message_size = 200                                                        (fixed, as before)
  message_size = {distribution = "uniform", min = "100B", max = "10KB"}     (every size min..max)
  message_size = {distribution = "weighted", sizes = ["200B", "10KB"], weights = [9, 1]}
  keys = "none" | "order_id"                                                (as before)
  keys = {distribution = "uniform", count = 1000}                           (1000 keys, equally likely)
  keys = {distribution = "zipf", count = 1000, s = 1.2}                     (key k with weight 1/k^s)

Nothing is drawn while sending: a producer cycles through pools built before the run (as it
always did for payloads), so a distribution costs the flat-out loop nothing per message. The pools
are stratified, not random draws: each value appears round(pool length x probability) times
(largest remainders), shuffled with a fixed seed, so a pool holds the distribution to within one
slot and every run sends the same sequence. A Zipf key whose share is below half a slot
(1 / (2 x KEY_POOL_SIZE)) gets no slot: the result's `distributions` section says how many keys
the pool holds. Pure: no I/O, no Kafka.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.core.field_checks import check_int, check_number, parse_size
from streamstore.errors import UsageError

SIZE_DISTRIBUTIONS = ("fixed", "uniform", "weighted")
KEY_DISTRIBUTIONS = ("uniform", "zipf")
# Key draws a producer cycles through (a power of two, so the slot is `sequence & mask`): the
# resolution of a key distribution. The batch pool of the send path holds twice as many
# prepared message dicts (about 3 MB).
KEY_POOL_SIZE = 8192
# Distinct payloads a size distribution gets at most (fewer when they would exceed the payload
# pool's memory budget; the sizes stay stratified over the fewer slots).
SIZE_POOL_SIZE = 8192
# Memory the distinct payloads of a producer may take (large messages get fewer slots).
PAYLOAD_POOL_MAX_BYTES = 64 * 1000**2
# Upper bound on `count` of a key distribution (its weights are computed when the pool is built).
MAX_KEYS = 1_000_000
# Every run draws the same pools.
POOL_SEED = 20_240_601
_ZIPF_S_RANGE = (0.0, 10.0)


@dataclass(frozen=True)
class SizeDistribution:
    """Message value sizes in bytes: uniform over min..max (sizes = (min, max)) or weighted."""

    kind: str
    sizes: tuple[int, ...]
    weights: tuple[float, ...] = ()

    @property
    def largest(self) -> int:
        return max(self.sizes)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "uniform":
            return {"distribution": "uniform", "min": self.sizes[0], "max": self.sizes[1]}
        return {"distribution": "weighted", "sizes": list(self.sizes), "weights": list(self.weights)}

    def pool(self, slots: int) -> list[int]:
        """`slots` sizes holding the distribution (stratified), in a fixed shuffled order."""
        if self.kind == "uniform":
            low, high = self.sizes
            span = high - low + 1
            # Slot i covers the i-th of `slots` equal parts of the range; its size is that part's middle.
            sizes = [low + min(span - 1, int((i + 0.5) * span / slots)) for i in range(slots)]
        else:
            sizes = [self.sizes[index] for index in stratified_indices(self.weights, slots)]
        random.Random(POOL_SEED).shuffle(sizes)
        return sizes


@dataclass(frozen=True)
class KeyDistribution:
    """Keys drawn from `count` distinct keys: uniform, or Zipf (key k has weight 1 / k^s)."""

    kind: str
    count: int
    s: float | None = None

    def key_bytes(self) -> int:
        """Every key is the same length: "k" and the key's number zero-padded."""
        return 1 + len(str(self.count - 1))

    def key(self, index: int) -> bytes:
        return b"k" + str(index).zfill(self.key_bytes() - 1).encode()

    def weights(self) -> list[float]:
        if self.kind == "uniform":
            return [1.0] * self.count
        return [rank ** -self.s for rank in range(1, self.count + 1)]

    def to_dict(self) -> dict[str, Any]:
        values: dict[str, Any] = {"distribution": self.kind, "count": self.count}
        if self.kind == "zipf":
            values["s"] = self.s
        return values

    def pool(self, slots: int = KEY_POOL_SIZE) -> list[bytes]:
        """`slots` keys holding the distribution (stratified), in a fixed shuffled order."""
        indices = stratified_indices(self.weights(), slots)
        random.Random(POOL_SEED + 1).shuffle(indices)
        return [self.key(index) for index in indices]


def stratified_indices(weights: Sequence[float], slots: int) -> list[int]:
    """`slots` indices into `weights`, index i about slots x weights[i] / sum(weights) times
    (floor, then the largest remainders get one more; ties to the lower index). In index order."""
    total = math.fsum(weights)
    exact = [slots * weight / total for weight in weights]
    counts = [int(share) for share in exact]
    short = slots - sum(counts)
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for index in by_remainder[:short]:
        counts[index] += 1
    return [index for index, count in enumerate(counts) for _ in range(count)]


def size_pool(distribution: SizeDistribution, max_bytes: int = PAYLOAD_POOL_MAX_BYTES) -> list[int]:
    """The sizes of a distribution's payload pool: SIZE_POOL_SIZE slots, halved while they
    would take more than max_bytes (down to 16 slots, which still span the distribution)."""
    slots = SIZE_POOL_SIZE
    sizes = distribution.pool(slots)
    while slots > 16 and sum(sizes) > max_bytes:
        slots //= 2
        sizes = distribution.pool(slots)
    return sizes


def pool_mean(sizes: Sequence[int]) -> float:
    return sum(sizes) / len(sizes)


# -- parsing the scenario fields ---------------------------------------------------------------


def parse_message_size(value: Any) -> int | SizeDistribution:
    """The field `message_size`: a size (200, "1KB") or a distribution table; a fixed
    distribution is its size, so a scenario says a fixed size one way only."""
    if not isinstance(value, (Mapping, SizeDistribution)):
        return parse_size(value, "message_size")
    if isinstance(value, SizeDistribution):
        value = value.to_dict()
    kind = _kind("message_size", value, SIZE_DISTRIBUTIONS)
    if kind == "fixed":
        _only("message_size", value, {"size"})
        return parse_size(value["size"], "message_size.size")
    if kind == "uniform":
        _only("message_size", value, {"min", "max"})
        low, high = (parse_size(value[bound], f"message_size.{bound}") for bound in ("min", "max"))
        check_int("message_size.min", low, 1, None)
        if high < low:
            raise UsageError(f"message_size.max: {high:,} is below min ({low:,})")
        return SizeDistribution("uniform", (low, high))
    _only("message_size", value, {"sizes", "weights"})
    sizes, weights = value["sizes"], value["weights"]
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise UsageError('message_size.sizes: expected a non-empty list of sizes, e.g. ["200B", "10KB"]')
    if not isinstance(weights, (list, tuple)) or len(weights) != len(sizes):
        raise UsageError(f"message_size.weights: expected one weight per size ({len(sizes)} numbers)")
    parsed = tuple(parse_size(size, f"message_size.sizes[{i}]") for i, size in enumerate(sizes))
    for index, size in enumerate(parsed):
        check_int(f"message_size.sizes[{index}]", size, 1, None)
    for index, weight in enumerate(weights):
        check_number(f"message_size.weights[{index}]", weight, 0, None, open_low=True)
    if len(set(parsed)) != len(parsed):
        raise UsageError("message_size.sizes: each size once (add their weights instead)")
    return SizeDistribution("weighted", parsed, tuple(float(weight) for weight in weights))


def parse_keys(value: Any, modes: tuple[str, ...]) -> str | KeyDistribution:
    """The field `keys`: one of `modes` ("none", "order_id") or a distribution table."""
    if isinstance(value, KeyDistribution):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        if value not in modes:
            raise UsageError(f"keys: {value!r} is not allowed (allowed: {', '.join(modes)}, or a table "
                             f'like {{distribution = "zipf", count = 1000, s = 1.2}})')
        return value
    kind = _kind("keys", value, KEY_DISTRIBUTIONS)
    _only("keys", value, {"count", "s"} if kind == "zipf" else {"count"})
    check_int("keys.count", value["count"], 1, MAX_KEYS)
    if kind == "uniform":
        return KeyDistribution("uniform", value["count"])
    check_number("keys.s", value["s"], *_ZIPF_S_RANGE, open_low=True)
    return KeyDistribution("zipf", value["count"], float(value["s"]))


def _kind(field: str, table: Mapping[str, Any], kinds: tuple[str, ...]) -> str:
    kind = table.get("distribution")
    if kind not in kinds:
        raise UsageError(f"{field}.distribution: {kind!r} is not allowed (allowed: {', '.join(kinds)})")
    return kind


def _only(field: str, table: Mapping[str, Any], wanted: set[str]) -> None:
    """A distribution's table has exactly its own keys (besides `distribution`)."""
    given = set(table) - {"distribution"}
    if given != wanted:
        kind = table["distribution"]
        raise UsageError(f"{field}: a {kind} distribution takes {', '.join(sorted(wanted))} "
                         f"(got {', '.join(sorted(given)) or 'nothing'})")
