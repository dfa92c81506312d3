"""The order model, its JSON wire form, and payloads of a chosen size.

An order on the wire is a JSON object with at least order_id (string), user (string),
item (string) and quantity (integer), as the seed's producer sends it. Any other field (such
as the padding that makes an order a given size) is ignored by the tracker.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import orjson

PAYLOAD_KINDS = ("order", "text", "random")

DEFAULT_USER = "John Doe"
DEFAULT_ITEM = "pizza"
DEFAULT_QUANTITY = 10


class MalformedOrder(ValueError):
    """A message that is not a valid order; the text says what is wrong with it."""


@dataclass(frozen=True)
class Order:
    order_id: str
    user: str
    item: str
    quantity: int

    @classmethod
    def new(cls, user: str = DEFAULT_USER, item: str = DEFAULT_ITEM, quantity: int = DEFAULT_QUANTITY) -> Order:
        return cls(order_id=str(uuid.uuid4()), user=user, item=item, quantity=quantity)

    def to_dict(self) -> dict:
        return {"order_id": self.order_id, "user": self.user, "item": self.item, "quantity": self.quantity}

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    def describe(self) -> str:
        return f"{self.quantity} X {self.item} from {self.user} (Order ID: {self.order_id})"


_FIELD_TYPES = {"order_id": str, "user": str, "item": str, "quantity": int}


def parse_order(raw: bytes | None) -> Order:
    """Decode one message value into an Order, or raise MalformedOrder saying why."""
    if raw is None:
        raise MalformedOrder("empty message (no value)")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MalformedOrder(f"not JSON ({error})") from None
    if not isinstance(document, dict):
        raise MalformedOrder(f"expected a JSON object, got {type(document).__name__}")
    for field, expected_type in _FIELD_TYPES.items():
        if field not in document:
            raise MalformedOrder(f"missing field '{field}'")
        value = document[field]
        # bool is an int subclass in Python, but true is not a quantity.
        if not isinstance(value, expected_type) or isinstance(value, bool):
            raise MalformedOrder(f"field '{field}' should be {expected_type.__name__}, got {type(value).__name__}")
    return Order(document["order_id"], document["user"], document["item"], document["quantity"])


_TEXT_CORPUS = (
    b"order placed for pizza, margherita, extra cheese; delivery to 221B Baker Street, "
    b"customer John Doe, payment by card, courier assigned, estimated arrival in 30 minutes. "
)


def make_payload(kind: str, size_bytes: int, order: Order | None = None) -> bytes:
    """A message value of exactly size_bytes.

    order:  the order's JSON with a "padding" field filling it to the size (compresses well);
            a size smaller than the bare order JSON gives the bare order.
    text:   repeated English-like text (compresses well, like real order logs).
    random: os.urandom bytes (incompressible: librdkafka then sends it uncompressed).
    """
    if kind == "random":
        return os.urandom(size_bytes)
    if kind == "text":
        repeats = size_bytes // len(_TEXT_CORPUS) + 1
        return (_TEXT_CORPUS * repeats)[:size_bytes]
    if kind == "order":
        order = order or Order.new()
        bare = order.to_json()
        # '{...}' -> '{...,"padding":"xxx"}': 13 bytes of framing plus the padding itself.
        padding_bytes = size_bytes - len(bare) - len(b',"padding":""')
        if padding_bytes <= 0:
            return bare
        return bare[:-1] + b',"padding":"' + b"x" * padding_bytes + b'"}'
    raise ValueError(f"unknown payload kind {kind!r}; expected one of {', '.join(PAYLOAD_KINDS)}")
