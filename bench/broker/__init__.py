"""The broker side: the embedded Apache Kafka broker and fault injection on it."""
