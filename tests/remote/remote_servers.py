"""Loopback servers for remote-checkpoint tests: an HTTP file server with Range support that
counts the bytes it sends, and moto's S3 server."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class RangeServer:
    """Serves ``root`` at ``url``; ``sent`` counts body bytes; ``faults`` maps a URL path to an
    HTTP status to answer with, or to ``"truncate"`` (half the body, then the connection closes)."""

    root: Path
    url: str = ""
    sent: int = 0
    requests: int = 0
    faults: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, sent: int) -> None:
        with self.lock:
            self.sent += sent
            self.requests += 1

    def reset(self) -> None:
        with self.lock:
            self.sent = self.requests = 0


def _handler(server: RangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            fault = server.faults.get(path)
            if isinstance(fault, int):
                self._status_only(fault)
                return
            file = server.root / path.lstrip("/")
            if not file.is_file():
                self._status_only(404)
                return
            stat = file.stat()
            size = stat.st_size
            start, end = 0, size
            match = _RANGE.fullmatch(self.headers.get("Range", ""))
            if match:
                start = int(match.group(1))
                end = min(int(match.group(2)) + 1 if match.group(2) else size, size)
            self.send_response(206 if match else 200)
            self.send_header("Content-Length", str(end - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header(
                "ETag", '"' + hashlib.sha256(f"{size}-{stat.st_mtime_ns}".encode()).hexdigest()[:32] + '"'
            )
            if match:
                self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
            self.end_headers()
            if not body:
                return
            with open(file, "rb") as handle:
                handle.seek(start)
                chunk = handle.read(end - start)
            if fault == "truncate":
                chunk = chunk[: len(chunk) // 2]
                self.close_connection = True
            self.wfile.write(chunk)
            server.count(len(chunk))

        def _status_only(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@contextmanager
def range_server(root: Path) -> Iterator[RangeServer]:
    """An HTTP server for ``root`` on 127.0.0.1 (a free port), stopped on exit."""
    state = RangeServer(root)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
