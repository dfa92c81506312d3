"""The Locust Kafka user (scenarios/orders.py is its locustfile)."""
