"""Peers measured beside the harness: Kafka's own Java tools (ProducerPerformance, EndToEndLatency)."""
