"""Pure logic of the order model: no broker needed."""

import orjson
import pytest

from streamstore.orders import MalformedOrder, Order, make_payload, parse_order


def test_order_round_trips_through_json():
    order = Order.new("Ada", "sushi", 3)
    assert parse_order(order.to_json()) == order
    assert order.describe() == f"3 X sushi from Ada (Order ID: {order.order_id})"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (None, "empty message"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"order_id": "x", "user": "u", "item": "i"}', "missing field 'quantity'"),
        (b'{"order_id": 1, "user": "u", "item": "i", "quantity": 1}', "field 'order_id' should be str, got int"),
        (b'{"order_id": "x", "user": "u", "item": "i", "quantity": true}', "field 'quantity' should be int, got bool"),
        (b'{"order_id": "x", "user": "u", "item": "i", "quantity": "10"}', "field 'quantity' should be int, got str"),
    ],
)
def test_malformed_orders_say_why(raw, reason):
    with pytest.raises(MalformedOrder, match=reason):
        parse_order(raw)


def test_extra_fields_from_other_clients_are_ignored():
    raw = orjson.dumps({"order_id": "a", "user": "b", "item": "c", "quantity": 1, "note": "from another client"})
    assert parse_order(raw) == Order("a", "b", "c", 1)


@pytest.mark.parametrize("size", [150, 1000, 123_457])
@pytest.mark.parametrize("kind", ["order", "text", "random"])
def test_payload_has_exact_size(kind, size):
    assert len(make_payload(kind, size)) == size


def test_padded_order_is_still_an_order():
    order = Order.new()
    assert parse_order(make_payload("order", 5000, order)) == order


def test_order_payload_smaller_than_bare_order_is_the_bare_order():
    order = Order.new()
    assert make_payload("order", 10, order) == order.to_json()


def test_unknown_payload_kind():
    with pytest.raises(ValueError, match="unknown payload kind 'zeros'"):
        make_payload("zeros", 10)
