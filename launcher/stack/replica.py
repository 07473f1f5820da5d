"""The embedded Postgres's streaming replica that search reads (`chorus up --postgres-replica`)."""

from __future__ import annotations

from pathlib import Path

from launcher.settings import Endpoints
from launcher.stack.postgres import EmbeddedPostgres
from launcher.stack.processes import StackError, require_free_port


class SearchReplica:
    """A hot standby of the embedded primary under `home`/postgres-replica, on its own port.

    Asked for by the setting, or found on disk from an earlier `up`: like the Kafka cluster, what a
    stack was started with stays until `chorus down` and the folder's removal.
    """

    def __init__(self, home: Path, endpoints: Endpoints) -> None:
        settings = endpoints.settings
        self.server = EmbeddedPostgres(
            home / "postgres-replica" / "data",
            endpoints.replica_port,
            settings.postgres_shared_buffers,
            name="the Postgres replica",
            port_setting="CHORUS_POSTGRES_REPLICA_PORT",
        )
        if settings.postgres_replica and endpoints.external_database:
            raise StackError(
                "--postgres-replica replicates the embedded Postgres, but CHORUS_DATABASE_URL names another; "
                "point CHORUS_SEARCH_DATABASE_URL at that Postgres's replica instead"
            )
        self.wanted = not endpoints.external_database and (settings.postgres_replica or self.server.exists())
        self.url = endpoints.replica_database_url()

    def start(self, primary: EmbeddedPostgres, search_running: bool) -> None:
        """Copy the running `primary` (once) and start streaming from it; a running replica is left as it is."""
        if not self.wanted or self.server.running_pid() is not None:
            return
        if search_running and not self.server.exists():
            # The running search was started without a replica: it would go on reading the primary.
            raise StackError(
                "search is running and reads the primary; run `chorus down` first to start it on a replica"
            )
        self.check_port()  # again: before the base backup, which would otherwise copy the primary for nothing
        self.server.replicate(primary)
        self.server.start()

    def check_port(self) -> None:
        """Refuse a replica port another program holds, naming the setting that moves it."""
        if self.wanted and self.server.running_pid() is None:
            require_free_port(self.server.port, self.server.name, self.server.port_setting)

    def stop(self) -> bool:
        return self.server.stop()

    def service_env(self) -> dict[str, str]:
        """What search needs to read from the replica (the primary's role: a replica has its roles)."""
        return {"CHORUS_SEARCH_DATABASE_URL": self.url} if self.wanted else {}
