"""The embedded stack: Postgres, a Kafka broker and the services as local background processes."""
