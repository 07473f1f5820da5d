"""Chorus's own library: settings, database, topics, Kafka, metrics and logging shared by the services."""
