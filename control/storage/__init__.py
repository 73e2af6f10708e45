"""The apiserver's store: objects in memory, made durable by a write-ahead log."""
