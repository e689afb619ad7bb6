"""A scripted S3-compatible HTTP server on 127.0.0.1, for tests of a broken or hostile endpoint.

The test gives a function `answer(request) -> Reply`; the server calls it for
every request and sends exactly that reply, however wrong it is: a lying
Content-Length, a chunked body of any size, no Content-Length at all, a 200
to a ranged GET, a listing that never ends. It counts the body bytes it
managed to send, so a test can check how much the client actually consumed.

Started and stopped by the test (`with hostile_s3(answer) as server:`), on a
free loopback port; every connection has a socket timeout, so a client that
stops reading cannot keep a server thread alive.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

CONNECTION_TIMEOUT = 10.0


@dataclass
class Request:
    method: str
    path: str  # without the query, e.g. "/bucket/key"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Iterable[bytes] | None = None  # sent with Transfer-Encoding: chunked instead of `body`
    content_length: bool = True  # add Content-Length: len(body) unless the headers already have one


class HostileS3:
    def __init__(self, answer: Callable[[Request], Reply]) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self.body_bytes_sent = 0
        self.replies_finished = threading.Event()  # set whenever a reply is done (sent or cut off)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = False  # server_close() joins every connection's thread
        self._server.block_on_close = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hostile-s3", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _record(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        return self.answer(request)

    def _sent(self, n: int) -> None:
        with self._lock:
            self.body_bytes_sent += n

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = CONNECTION_TIMEOUT
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, *_: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                request = Request(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()})
                reply = server._record(request)
                try:
                    self._send(reply)
                except OSError:
                    self.close_connection = True  # the client hung up: what a test may want to see
                finally:
                    server.replies_finished.set()

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                names = {k.lower() for k in reply.headers}
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunks is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                elif reply.content_length and "content-length" not in names:
                    self.send_header("Content-Length", str(len(reply.body)))
                if reply.chunks is None and not reply.content_length:
                    self.send_header("Connection", "close")  # the body ends when the connection does
                    self.close_connection = True
                self.end_headers()
                if self.command == "HEAD":
                    return
                if reply.chunks is None:
                    self.wfile.write(reply.body)
                    server._sent(len(reply.body))
                    return
                for chunk in reply.chunks:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    server._sent(len(chunk))
                self.wfile.write(b"0\r\n\r\n")

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _serve

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        # Wake the threads still waiting on a kept-alive connection, then join them all.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=CONNECTION_TIMEOUT)


@contextmanager
def hostile_s3(answer: Callable[[Request], Reply]) -> Iterator[HostileS3]:
    server = HostileS3(answer)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def xml_error(code: str, status: int) -> Reply:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>scripted</Message></Error>"
    return Reply(status, {"Content-Type": "application/xml"}, body.encode())


def list_page(keys: list[str], *, token: str | None, prefix: str = "", prefixes: list[str] | None = None) -> Reply:
    """A ListObjectsV2 answer listing `keys` (and common `prefixes`), truncated with `token` if given."""
    contents = "".join(
        f"<Contents><Key>{key}</Key><Size>1</Size><ETag>&quot;x&quot;</ETag>"
        "<LastModified>2026-01-01T00:00:00.000Z</LastModified><StorageClass>STANDARD</StorageClass></Contents>"
        for key in keys
    )
    common = "".join(f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>" for p in prefixes or [])
    truncated = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>"
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<ListBucketResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
        f"<Name>b</Name><Prefix>{prefix}</Prefix><KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
        f"{truncated if token else '<IsTruncated>false</IsTruncated>'}{contents}{common}</ListBucketResult>"
    )
    return Reply(200, {"Content-Type": "application/xml"}, body.encode())
