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

from bench.broker.proxy_control import ProxySet, control_path, remote_proxies, send_command
from streamstore.errors import EXIT_OK, RunFailed, UsageError

NAME = "proxy"
HELP = "client proxies in front of broker nodes (for isolate and delay faults)"

# The background proxies answer their control socket within this long, or the start failed.
START_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", required=True, help="state dir of the broker or cluster the proxies front")
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
    state_dir = Path(args.state_dir).resolve()
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
        print(f"stopped the client proxies for {state_dir}")
        return EXIT_OK
    routes = dict(parse_route(text) for text in args.routes)
    if not routes:
        raise UsageError("--node: give each node's proxy, e.g. --node 1=39210:39200")
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
