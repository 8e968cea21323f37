"""A small HTTP/1.1 client for balancer -> worker traffic: pooled keep-alive connections, one
socket write per request, h11 for the protocol.

Why not httpx: on a 2-core box its per-request cost was most of the balancer's overhead. The
balancer needs only POST/GET with a body, whole or streamed responses, and a clear verdict on
failures, which `UpstreamError.kind` gives: "connect" (refused: the worker is not there),
"dropped" (the connection died mid-request: the worker crashed), "protocol" (garbage).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

READ_SIZE = 65536


class UpstreamError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class Head:
    status: int
    headers: dict[str, str]


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.reused = False
        self.eof = False

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()

    async def next_event(self):
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self.eof:   # h11's verdict on a connection cut mid-answer
                    raise UpstreamError("dropped", "worker closed the connection mid-answer") from None
                raise UpstreamError("protocol", f"bad HTTP from worker: {exc}") from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.reader.read(READ_SIZE)
            except (ConnectionError, OSError) as exc:
                raise UpstreamError("dropped", f"connection lost: {exc}") from None
            if not data:
                self.eof = True
                if self.h11.their_state is h11.SEND_RESPONSE:
                    raise UpstreamError("dropped", "worker closed the connection without answering")
            self.h11.receive_data(data)


class Upstream:
    """Connections per worker address ("host:port"), reused while both sides keep them open."""

    def __init__(self, connect_timeout: float = 5.0):
        self.connect_timeout = connect_timeout
        self._idle: dict[str, list[_Conn]] = {}

    async def open(self, address: str, method: str, path: str, headers: list[tuple[str, str]],
                   body: bytes = b"") -> tuple[Head, "_Conn"]:
        """Send the request and read the response head. A stale pooled connection (closed by
        the worker while idle) is retried once on a fresh one."""
        for attempt in range(2):
            conn = await self._get(address, fresh=attempt > 0)
            try:
                return await self._send(conn, address, method, path, headers, body), conn
            except UpstreamError as exc:
                conn.close()
                if not (conn.reused and exc.kind == "dropped" and attempt == 0):
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")

    async def request(self, address: str, method: str, path: str, headers: list[tuple[str, str]],
                      body: bytes = b"") -> tuple[Head, bytes]:
        head, conn = await self.open(address, method, path, headers, body)
        return head, await self.read_all(address, conn)

    async def read_all(self, address: str, conn: _Conn) -> bytes:
        chunks, done = [], False
        try:
            while (piece := await self.next_chunk(conn)) is not None:
                chunks.append(piece)
            done = True
        finally:
            self.release(address, conn, done)
        return b"".join(chunks)

    @staticmethod
    async def next_chunk(conn: _Conn):
        """The next piece of the response body, or None at its end."""
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.Data):
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                return None
            if isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("dropped", "worker closed the connection mid-answer")

    def release(self, address: str, conn: _Conn, complete: bool) -> None:
        """Back to the pool after a complete exchange; closed otherwise."""
        if complete and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
            conn.h11.start_next_cycle()
            if conn.usable():
                self._idle.setdefault(address, []).append(conn)
                return
        conn.close()

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # ---- internals -------------------------------------------------------------------------
    async def _get(self, address: str, fresh: bool) -> _Conn:
        idle = self._idle.setdefault(address, [])
        while idle and not fresh:
            conn = idle.pop()
            if conn.usable():
                conn.reused = True
                return conn
            conn.close()
        host, _, port = address.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)),
                                                    self.connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamError("connect", f"connect to {address} timed out") from None
        except OSError as exc:
            raise UpstreamError("connect", f"cannot connect to {address}: {exc.strerror or exc}") from None
        return _Conn(reader, writer)

    async def _send(self, conn: _Conn, address: str, method: str, path: str,
                    headers: list[tuple[str, str]], body: bytes) -> Head:
        all_headers = [("host", address), ("content-length", str(len(body))), *headers]
        data = conn.h11.send(h11.Request(method=method, target=path, headers=all_headers))
        data += conn.h11.send(h11.Data(data=body)) if body else b""
        data += conn.h11.send(h11.EndOfMessage())
        try:
            conn.writer.write(data)
            await conn.writer.drain()
        except (ConnectionError, OSError) as exc:
            raise UpstreamError("dropped", f"connection lost while sending: {exc}") from None
        while True:
            event = await conn.next_event()
            if isinstance(event, h11.Response):
                return Head(event.status_code, {k.decode().lower(): v.decode("latin-1")
                                                for k, v in event.headers})
            if isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("dropped", "worker closed the connection without answering")

