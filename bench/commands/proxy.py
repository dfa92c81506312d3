"""`python -m bench proxy start|stop|status`: client proxies in front of a broker's nodes, so that
`isolate:` and `delay:` faults can cut or slow a node's clients while replication goes on.

Start them before the broker (it checks its advertised address when it starts), with each node's
advertised client port as LISTEN and its bound client port as UPSTREAM (docs/faults.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.broker.embedded import STATE_ROOT
from bench.broker.locate import find_embedded
from bench.broker.proxy_control import ProxySet, control_path, remote_proxies, send_command
from streamstore.cli import add_bootstrap_argument
from streamstore.errors import EXIT_OK, RunFailed, UsageError

NAME = "proxy"
HELP = "client proxies in front of broker nodes (for isolate and delay faults)"

# The background proxies answer their control socket within this long, or the start failed.
START_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", help="state dir of the broker or cluster the proxies front (default: start: "
                                            "the one under .state/ whose nodes bind the UPSTREAM ports, else "
                                            ".state/cluster-<node 1's UPSTREAM>; stop/status: the one that "
                                            "answers at --bootstrap-servers, else where proxies run under .state/)")
    add_bootstrap_argument(parser)
    parser.add_argument("--node", dest="routes", action="append", default=[], metavar="ID=LISTEN:UPSTREAM",
                        help="node ID's proxy: listen on LISTEN (the port the node advertises to clients), forward "
                             "to UPSTREAM (the port it binds), e.g. --node 1=39210:39200 (repeatable)")
    parser.add_argument("--foreground", action="store_true", help="run in this process until Ctrl+C (start only)")


def parse_route(text: str) -> tuple[int, tuple[int, int]]:
    try:
        node, ports = text.split("=", 1)
        listen, upstream = ports.split(":", 1)
        return int(node), (int(listen), int(upstream))
    except ValueError:
        raise UsageError(f"--node {text!r}: expected ID=LISTEN:UPSTREAM, e.g. 1=39210:39200") from None


def run(args: argparse.Namespace) -> int:
    routes = dict(parse_route(text) for text in args.routes)
    if args.action == "start" and not routes:
        raise UsageError("--node: give each node's proxy, e.g. --node 1=39210:39200")
    state_dir = _state_dir(args, routes)
    if state_dir is None:
        print(f"no client proxies run under {STATE_ROOT.resolve()}, and no embedded broker there answers at "
              f"{args.bootstrap_servers}")
        return EXIT_OK
    path = control_path(state_dir)
    if args.action == "status":
        proxies = remote_proxies(state_dir)
        print(f"client proxies for nodes {', '.join(map(str, proxies))} at {path}" if proxies
              else f"no client proxies run for {state_dir}")
        return EXIT_OK
    if args.action == "stop":
        if not remote_proxies(state_dir):
            print(f"no client proxies run for {state_dir}")
            return EXIT_OK
        send_command(path, "stop")
        # They answer "ok" before closing; stopped means their ports and socket are given back.
        deadline = time.monotonic() + START_TIMEOUT_S
        while path.exists():
            if time.monotonic() > deadline:
                raise RunFailed(f"the client proxies for {state_dir} said they stop but still run after "
                                f"{START_TIMEOUT_S:.0f} s ({path})")
            time.sleep(0.05)
        print(f"stopped the client proxies for {state_dir}")
        return EXIT_OK
    state_dir.mkdir(parents=True, exist_ok=True)
    if args.foreground:
        return _serve(state_dir, routes)
    command = [sys.executable, "-m", "bench", "proxy", "start", "--state-dir", str(state_dir), "--foreground",
               *(f"--node={node}={listen}:{upstream}" for node, (listen, upstream) in routes.items())]
    log_path = state_dir / "client-proxies.log"
    # The proxies' own handle on the log lives on in them; this process needs none.
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not remote_proxies(state_dir):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise RunFailed(f"the client proxies did not start: {tail[0] if tail else 'no output'}")
        time.sleep(0.1)
    print(f"client proxies for nodes {', '.join(map(str, routes))} (pid {process.pid}), control {path}")
    return EXIT_OK


def _state_dir(args: argparse.Namespace, routes: dict[int, tuple[int, int]]) -> Path | None:
    """--state-dir, else the cluster the proxies front (bench/broker/locate.py): for start, the one
    whose nodes bind the UPSTREAM ports (or the state dir `broker start --nodes N --port P` will
    use, P being node 1's UPSTREAM); for stop and status, the one answering at --bootstrap-servers
    when its proxies run, else the one state dir under .state/ where proxies run (None: none)."""
    if args.state_dir is not None:
        return Path(args.state_dir).resolve()
    if args.action == "start":
        found = find_embedded(",".join(f"127.0.0.1:{upstream}" for _, upstream in routes.values()))
        first = min(routes)
        return found.state_dir if found else (STATE_ROOT / f"cluster-{routes[first][1] - (first - 1)}").resolve()
    found = find_embedded(args.bootstrap_servers)
    if found is not None and remote_proxies(found.state_dir):
        return found.state_dir
    with contextlib.suppress(OSError):
        proxied = [path.resolve() for path in sorted(STATE_ROOT.iterdir()) if remote_proxies(path)]
        if len(proxied) > 1:
            raise UsageError(f"client proxies run for {len(proxied)} state dirs under .state/ "
                             f"({', '.join(map(str, proxied))}): pick one with --state-dir")
        if proxied:
            return proxied[0]
    return found.state_dir if found is not None else None


def _serve(state_dir: Path, routes) -> int:
    proxies = ProxySet(state_dir, routes).start()
    signal.signal(signal.SIGTERM, lambda *_: proxies.stopped.set())
    try:
        while not proxies.stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        proxies.stop()
    return EXIT_OK
