"""The client proxies of a broker's nodes as one long-running set, controlled from other processes.

`bench proxy start` runs a `ProxySet` in the background: one `ClientProxy` per node, listening on
the port the node advertises to clients and forwarding to the port it binds, and a control socket
(`client-proxies.sock` in the broker's or cluster's state dir) that takes one-line commands:

  nodes                 -> "ok 1 2 3"
  cut N / restore N     -> isolate node N from its clients, or let them through again
  delay N SECONDS       -> hold each byte node N sends to clients that long (0: no delay)
  stop                  -> close every proxy and end

`remote_proxies(state_dir)` gives the fault injector one `RemoteProxy` per node, with the same
`cut()`, `restore()` and `delay_s` as an in-process `ClientProxy`.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Mapping
from pathlib import Path

from bench.broker.proxy import ClientProxy
from streamstore.errors import RunFailed, UsageError

CONTROL_SOCKET = "client-proxies.sock"
# A command is answered in milliseconds; a cut waits for the proxy loop to close connections.
CONTROL_TIMEOUT_S = 15.0


def control_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / CONTROL_SOCKET


class ProxySet:
    """node id -> ClientProxy(listen port -> upstream port on 127.0.0.1), and their control socket."""

    def __init__(self, state_dir: str | Path, routes: Mapping[int, tuple[int, int]]):
        self.path = control_path(state_dir)
        self.proxies = {node: ClientProxy("127.0.0.1", upstream, listen_port=listen)
                        for node, (listen, upstream) in sorted(routes.items())}
        self.stopped = threading.Event()
        self._server: socketserver.UnixStreamServer | None = None

    def start(self) -> ProxySet:
        if self.path.exists():
            if _answers(self.path):
                raise UsageError(f"client proxies already run for {self.path.parent} ({self.path})")
            self.path.unlink()
        started = []
        try:
            for proxy in self.proxies.values():
                started.append(proxy.start())
        except OSError as error:
            for proxy in started:
                proxy.stop()
            raise UsageError(f"a client proxy could not listen: {error.strerror or error}") from None
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode(errors="replace").strip()
                self.wfile.write((owner.command(line) + "\n").encode())

        self._server = socketserver.UnixStreamServer(str(self.path), Handler)
        threading.Thread(target=self._server.serve_forever, name="proxy-control", daemon=True).start()
        return self

    def command(self, line: str) -> str:
        words = line.split()
        try:
            if words == ["nodes"]:
                return "ok " + " ".join(str(node) for node in self.proxies)
            if words == ["stop"]:
                self.stopped.set()
                return "ok"
            if len(words) in (2, 3) and words[0] in ("cut", "restore", "delay"):
                proxy = self.proxies[int(words[1])]
                if words[0] == "cut" and len(words) == 2:
                    proxy.cut()
                elif words[0] == "restore" and len(words) == 2:
                    proxy.restore()
                elif words[0] == "delay" and len(words) == 3 and float(words[2]) >= 0:
                    proxy.delay_s = float(words[2])
                else:
                    return f"error: bad command {line!r}"
                return "ok"
        except (KeyError, ValueError):
            pass
        return f"error: bad command {line!r} (nodes {' '.join(str(n) for n in self.proxies)})"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for proxy in self.proxies.values():
            proxy.stop()
        self.path.unlink(missing_ok=True)


def send_command(path: Path, line: str, timeout_s: float = CONTROL_TIMEOUT_S) -> str:
    """One command to a ProxySet's control socket; its answer after "ok" (RunFailed otherwise)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout_s)
            connection.connect(str(path))
            connection.sendall((line + "\n").encode())
            answer = connection.makefile().readline().strip()
    except OSError as error:
        raise RunFailed(f"the client proxies at {path} do not answer: {error.strerror or error}") from None
    if not answer.startswith("ok"):
        raise RunFailed(f"the client proxies at {path} refused {line!r}: {answer or 'no answer'}")
    return answer[2:].strip()


def _answers(path: Path) -> bool:
    with contextlib.suppress(RunFailed):
        send_command(path, "nodes", timeout_s=2.0)
        return True
    return False


class RemoteProxy:
    """One node's proxy in a ProxySet of another process, with ClientProxy's controls."""

    def __init__(self, path: Path, node_id: int):
        self.path, self.node_id = path, node_id
        self._delay_s = 0.0

    def cut(self) -> None:
        send_command(self.path, f"cut {self.node_id}")

    def restore(self) -> None:
        send_command(self.path, f"restore {self.node_id}")

    @property
    def delay_s(self) -> float:
        return self._delay_s

    @delay_s.setter
    def delay_s(self, seconds: float) -> None:
        send_command(self.path, f"delay {self.node_id} {seconds}")
        self._delay_s = seconds


def remote_proxies(state_dir: str | Path | None) -> dict[int, RemoteProxy]:
    """node id -> RemoteProxy when client proxies run for this state dir, else {}."""
    if state_dir is None:
        return {}
    path = control_path(state_dir)
    if not path.exists() or not _answers(path):
        return {}
    return {int(node): RemoteProxy(path, int(node)) for node in send_command(path, "nodes").split()}
