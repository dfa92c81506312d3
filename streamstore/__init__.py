"""StreamStore: the order producer and tracker on Kafka.

This package is the Kafka domain only. It knows nothing of bench or Locust.
"""
