"""`chorus up`, `down` and `status`: the only commands that load the embedded stack, and only when run."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable

from launcher.commands.common import CommandError, Commands

Run = Callable[[argparse.Namespace], int]


def register(commands: Commands) -> None:
    up = commands.add_parser("up", help="start Postgres, Kafka and the four services in the background")
    up.add_argument(
        "--kafka-brokers",
        type=int,
        metavar="N",
        help="run Kafka as a KRaft cluster of N brokers on loopback (3: replication 3, min.insync.replicas 2)",
    )
    up.add_argument(
        "--workers",
        metavar="NAME=N,...",
        help="processes of each consumer service, e.g. embed=2,cluster=2,normalizer=2 (1 of each by default)",
    )
    up.add_argument(
        "--postgres-replica",
        action="store_true",
        help="start a streaming replica of the embedded Postgres (on CHORUS_POSTGRES_REPLICA_PORT) for search to read",
    )
    up.set_defaults(run=_up)
    down = commands.add_parser("down", help="stop everything `chorus up` started")
    down.set_defaults(run=_down)
    status = commands.add_parser("status", help="which parts of the embedded stack are running")
    status.set_defaults(run=_status)


def _stack_errors(run: Run) -> Run:
    """The stack's own error, which names the cause and its fix, as the command's one line."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from launcher.stack.processes import StackError

        try:
            return run(args)
        except StackError as error:
            raise CommandError(str(error)) from None

    return wrapped


@_stack_errors
def _up(args: argparse.Namespace) -> int:
    from launcher.stack.local import DEMO_TENANT, LocalStack

    overrides: dict[str, str] = {}
    if args.kafka_brokers is not None:
        overrides["CHORUS_KAFKA_BROKERS"] = str(args.kafka_brokers)
    if args.workers is not None:
        overrides["CHORUS_WORKERS"] = args.workers
    if args.postgres_replica:
        overrides["CHORUS_POSTGRES_REPLICA"] = "true"
    stack = LocalStack({**os.environ, **overrides})
    values = stack.up()
    seconds = values.pop("CHORUS_UP_SECONDS")
    demo_records = values.pop("CHORUS_DEMO_RECORDS", "0")
    ingest = values["CHORUS_INGEST_URL"]
    print(f"Chorus is up ({seconds}s); {demo_records} demo records sent through ingest.")
    search = values["CHORUS_SEARCH_URL"]
    print(f"  search   {search}   (inbox: {search}/inbox, API docs: {search}/docs)")
    print(f"  ingest   {ingest}")
    for service in ("embed", "cluster"):
        print(f"  {service:<8} {stack.metrics_url(service)}")
    for worker in stack.workers.names():
        print(f"  {worker:<8} {stack.metrics_url(worker)}   (a worker: its consumer groups' share, its metrics)")
    print(f"  kafka    {values['CHORUS_KAFKA_BOOTSTRAP']}")
    if stack.replica.wanted:
        print(f"  replica  127.0.0.1:{stack.replica.server.port}   (a streaming replica of Postgres: search reads it)")
    if "CHORUS_PROMETHEUS_URL" in values:
        print(f"  prometheus {values['CHORUS_PROMETHEUS_URL']}   (alerts: deploy/prometheus/alerts.yml)")
    print(f"  logs     {stack.home / 'logs'}")
    print(f"  env      {stack.home / 'demo.env'}")
    print("To receive a real StreamChat app's messages and post the replies with it:")
    print(f"  chorus streamchat connect {DEMO_TENANT} --api-key <app key> --api-secret <app secret>")
    print(f"  then, in StreamChat's dashboard, set the app's webhook URL to {ingest}/webhooks/streamchat")
    print("  (at an address StreamChat can reach: a public host, or a tunnel to this port)")
    print(f"Demo tenant {values['CHORUS_DEMO_TENANT']}, API key:")
    print(values["CHORUS_DEMO_API_KEY"])
    return 0


@_stack_errors
def _down(args: argparse.Namespace) -> int:
    from launcher.stack.local import LocalStack

    stopped = LocalStack().down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


@_stack_errors
def _status(args: argparse.Namespace) -> int:
    from launcher.stack.local import LocalStack

    stack = LocalStack()
    status = stack.status()
    for part, running in status.items():
        # A worker's port is its own, picked when it first started: the one thing to look up here.
        where = f"  {stack.metrics_url(part)}" if part in stack.workers.names() else ""
        print(f"{part:<9} {'running' if running else 'stopped'}{where}")
    return 0 if all(status.values()) else 3
