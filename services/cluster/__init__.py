"""The cluster service: groups similar inbound fan messages per creator."""
