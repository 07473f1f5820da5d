"""The `chorus` command: the one entry point for people, scripts and the Makefile."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import asyncpg

from launcher.commands import connections, data, dlq, setup, stack, tenants
from launcher.commands.common import CommandError
from launcher.commands.setup import settings_table
from shared.migrate import MigrationError
from shared.settings import SettingsError

__all__ = ["main", "settings_table"]

# What a database without Chorus's schema, or without its latest migrations, answers.
_UNMIGRATED = (asyncpg.UndefinedFunctionError, asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a failure is one line on stderr and a non-zero exit, never a traceback."""
    debug = os.environ.get("CHORUS_LOG_LEVEL", "").upper() == "DEBUG"
    # The Kafka client logs each failed connection; the command's own line says what failed.
    logging.getLogger("aiokafka").setLevel(logging.DEBUG if debug else logging.CRITICAL)
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except (CommandError, SettingsError, MigrationError) as error:
        return _fail(str(error))
    except _UNMIGRATED:
        return _fail("the database lacks Chorus's schema or its latest migrations; run `chorus migrate`")
    except BrokenPipeError:
        # The reader of our output went away (`chorus up | head -1`): nothing left to say.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        # A failure no command foresaw; CHORUS_LOG_LEVEL=DEBUG shows where it came from.
        if debug:
            raise
        return _fail(f"{type(error).__name__}: {error} (CHORUS_LOG_LEVEL=DEBUG shows the traceback)")


def _fail(message: str) -> int:
    print(f"chorus: {message}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus", description=__doc__)
    commands = parser.add_subparsers(title="commands")
    for module in (stack, setup, tenants, connections, data, dlq):
        module.register(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
