"""Locust load with StreamStore orders: `locust -f scenarios/orders.py` (see docs/locust.md).

Every option is a Locust custom argument (`locust -f scenarios/orders.py --help`, env
LOCUST_<OPTION>, locust.conf). Users produce orders flat out, or at --user-rate msg/s each;
--load-steps makes user-count steps. At the end the master writes results/<UTC>-locust-orders/.
"""

from locust import events

from bench.locust.user import KafkaOrdersUser, OrderLoadShape, register

register(events)


class OrdersUser(KafkaOrdersUser):
    """One Locust user producing orders through its process's shared producer."""


__all__ = ["OrdersUser", "OrderLoadShape"]
