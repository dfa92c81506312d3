"""`python -m bench topic delete NAME`: delete a topic the harness (or anyone) created.

Commands create their topic when it is missing and use an existing one as it is, so a topic
left by one command with another partition count stops the next one (exit 2, "exists with 3
partitions"). This is the way out without Kafka's own tools.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.commands._options import read_client_config
from streamstore.admin import ADMIN_TIMEOUT_S, connect_admin, delete_topic
from streamstore.cli import add_bootstrap_argument
from streamstore.errors import EXIT_OK, RunFailed, UsageError

NAME = "topic"
HELP = "delete a topic (e.g. one left by another command with a different partition count)"

# How often to ask whether a deleted topic has left the broker's metadata.
_GONE_POLL_S = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("delete",), help="delete: remove the topics and all their messages")
    parser.add_argument("names", nargs="+", metavar="NAME", help="topic name(s)")
    add_bootstrap_argument(parser)
    parser.add_argument("--client-config", type=Path, metavar="FILE",
                        help='TOML file of librdkafka settings for the admin client, e.g. "security.protocol" = "SASL_SSL"')
    parser.add_argument("--if-exists", action="store_true",
                        help="a topic that does not exist is no error (exit 0), for scripts")


def run(args: argparse.Namespace) -> int:
    internal = [name for name in args.names if name.startswith("__")]
    if internal:
        raise UsageError(f"topic {internal[0]!r} is one of Kafka's internal topics; it is not deleted from here")
    settings = read_client_config(args.client_config) if args.client_config else {}
    admin = connect_admin(args.bootstrap_servers, settings)
    existing = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
    missing = [name for name in args.names if name not in existing]
    if missing and not args.if_exists:
        raise UsageError(f"no topic {missing[0]!r} at {args.bootstrap_servers} (--if-exists makes that no error)")
    for name in args.names:
        if name in missing:
            print(f"no topic '{name}' at {args.bootstrap_servers}: nothing to delete")
            continue
        partitions = len(existing[name].partitions)
        delete_topic(admin, name)
        # Deletion completes in the background; a command that recreates the topic right after
        # would find it still there ("marked for deletion"). Return once it has left the metadata.
        deadline = time.monotonic() + ADMIN_TIMEOUT_S
        while name in admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics:
            if time.monotonic() > deadline:
                raise RunFailed(f"topic '{name}' was deleted but still listed after {ADMIN_TIMEOUT_S:g} s")
            time.sleep(_GONE_POLL_S)
        print(f"deleted topic '{name}' ({partitions} partition{'s' if partitions != 1 else ''}) at {args.bootstrap_servers}")
    return EXIT_OK
