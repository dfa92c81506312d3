"""The broker side: the embedded Apache Kafka broker and multi-node cluster, and fault injection on them."""
