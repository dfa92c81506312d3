"""Test-only locustfile: scenarios/orders.py with the tracker stalled until the broker's log
starts at TEST_TRACKER_LOG_START (seams.stalled_tracker), so a test can have the broker drop acked
orders before the tracker reads them (tests/test_locust.py). Run with tests/ on PYTHONPATH: Locust puts
this folder on sys.path only while it imports the locustfile, and the tracker's spawned process
imports `seams` (its entry point) with the sys.path Locust has then."""

import os

from locust import events
from seams import stalled_tracker

import bench.locust.master
from bench.locust.user import KafkaOrdersUser, OrderLoadShape, register

register(events)
bench.locust.master.tracker_main = stalled_tracker(int(os.environ["TEST_TRACKER_LOG_START"]))


class OrdersUser(KafkaOrdersUser):
    """One Locust user producing orders through its process's shared producer."""


__all__ = ["OrdersUser", "OrderLoadShape"]
