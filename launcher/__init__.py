"""The `chorus` command and the embedded stack it starts: the layer above the services."""
