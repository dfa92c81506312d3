"""A TCP proxy in front of one broker's client listener: delays its responses, or cuts its clients off.

Put it in front of a broker whose advertised client listener is the proxy's address, so every
client connection (bootstrap and the broker connections learned from metadata) goes through it,
while replication and the controller quorum use the broker's other listeners directly.
Requests pass straight through; each chunk of bytes the broker sends back is held until
`delay_s` after it arrived, then forwarded in order. A produce request's acknowledgement thus
arrives exactly `delay_s` later than it would have: the latency-truth test checks the harness
reports that (docs/measurement.md, "Latency truth"), and `delay:` faults use it
(docs/faults.md). `cut()` closes every client connection and refuses new ones until
`restore()`: the node is isolated from its clients (`isolate:` faults) but not from its peers.

The proxy runs an asyncio loop in a daemon thread of the calling process; `delay_s` may be
changed at any time and applies to bytes that arrive after the change.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import statistics
import threading

_CHUNK_BYTES = 1 << 16
# How many of the latest holds `held_p50_s` looks at: a few minutes of responses at test rates.
_HOLDS_KEPT = 100_000


class ClientProxy:
    def __init__(self, upstream_host: str, upstream_port: int, delay_s: float = 0.0, listen_port: int = 0):
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, not {delay_s}")
        self.upstream = (upstream_host, upstream_port)
        self.delay_s = delay_s
        self.listen_port = listen_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.is_cut = False
        # How long each chunk was actually held, arrival to forward: on a busy machine the wake-up
        # after the timer comes late, so the delay a client sees can exceed delay_s.
        self._held_s: collections.deque[float] = collections.deque(maxlen=_HOLDS_KEPT)
        self._held_lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.listen_port}"

    def start(self) -> ClientProxy:
        """Listen on 127.0.0.1 (listen_port, or a free port when 0) and return at once."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._server = self._loop.run_until_complete(
                    asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
                )
                self.listen_port = self._server.sockets[0].getsockname()[1]
            except OSError as error:
                failure.append(error)
                ready.set()
                self._loop.close()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="client-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def shut_down() -> None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            self._loop.stop()

        with contextlib.suppress(RuntimeError):  # the loop already stopped
            asyncio.run_coroutine_threadsafe(shut_down(), self._loop)
        self._thread.join(timeout=10)

    def cut(self) -> None:
        """Close every connection through the proxy now and refuse new ones until `restore()`."""
        self.is_cut = True
        if self._loop is not None:
            async def close_all() -> None:
                for writer in list(self._connections):
                    writer.close()

            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=10)

    def restore(self) -> None:
        self.is_cut = False

    def clear_holds(self) -> None:
        with self._held_lock:
            self._held_s.clear()

    def held_p50_s(self) -> float | None:
        """The median time the proxy actually held a response chunk since `clear_holds()`
        (None before the first): delay_s plus the proxy's own forwarding and wake-up time."""
        with self._held_lock:
            held = list(self._held_s)
        return statistics.median(held) if held else None

    def __enter__(self) -> ClientProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            # Isolated: the client sees its connection dropped at once, as with a network cut.
            client_writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            # The broker is down: the client sees a dropped connection, as it would without us.
            client_writer.close()
            return
        self._connections.update((client_writer, upstream_writer))
        try:
            await asyncio.gather(
                self._forward(client_reader, upstream_writer),
                self._forward_delayed(upstream_reader, client_writer),
            )
        finally:
            for writer in (client_writer, upstream_writer):
                self._connections.discard(writer)
                writer.close()

    @staticmethod
    async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(_CHUNK_BYTES):
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def _forward_delayed(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward each chunk delay_s after it arrived; reading goes on meanwhile (no stacking)."""
        loop = asyncio.get_running_loop()
        pending: asyncio.Queue[tuple[float, float, bytes] | None] = asyncio.Queue()

        async def read() -> None:
            with contextlib.suppress(OSError):
                while chunk := await reader.read(_CHUNK_BYTES):
                    arrived = loop.time()
                    pending.put_nowait((arrived, arrived + self.delay_s, chunk))
            pending.put_nowait(None)

        async def write() -> None:
            with contextlib.suppress(OSError):
                while (item := await pending.get()) is not None:
                    arrived, due, chunk = item
                    if (wait_s := due - loop.time()) > 0:
                        await asyncio.sleep(wait_s)
                    writer.write(chunk)
                    with self._held_lock:
                        self._held_s.append(loop.time() - arrived)
                    await writer.drain()
            writer.close()

        await asyncio.gather(read(), write())
