"""``nightloop collect``: an OTLP/HTTP receiver that writes spans and log events into the store as they arrive.

A team points ``OTEL_EXPORTER_OTLP_ENDPOINT`` at it (``http://127.0.0.1:4318``) and needs no files. It accepts
``POST /v1/traces`` and ``POST /v1/logs`` as protobuf (``application/x-protobuf``, decoded with the
OpenTelemetry protobuf package) or JSON (``application/json``), optionally gzipped. Each request is stored in
one go (spans deduplicated by trace and span id; the conversations they touch re-merged and reclassified),
then answered 200; a request over the size cap gets 413, a bad payload 400: both are counted, none stops it.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nightloop.errors import ConfigError
from nightloop.ingest import Classifier, classify_batch
from nightloop.models import IngestStats
from nightloop.sources.otel import export_spans
from nightloop.span_ingest import ingest_span_items
from nightloop.store import Store

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "Collector", "CollectorStats", "make_server"]

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: An oversized request up to this size is read (and dropped) before the 413; a bigger one just gets the connection closed.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
PATHS = {"/v1/traces": "traces", "/v1/logs": "logs"}
PROTOBUF = "application/x-protobuf"
INSTALL_HINT = "OTLP protobuf needs the OpenTelemetry protobuf package: pip install 'nightloop[otlp]'"
ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class BadPayload(ValueError):
    """A request the receiver cannot read (answered 400)."""


@dataclass
class CollectorStats:
    """What the receiver did since it started."""

    requests: int = 0
    rejected: int = 0
    spans: int = 0
    conversations_new: int = 0
    conversations_updated: int = 0
    last_error: str = ""
    failures: dict[str, int] = field(default_factory=dict)


def _proto_messages() -> dict[str, Any]:
    try:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigError(INSTALL_HINT) from exc
    return {"traces": (ExportTraceServiceRequest, ExportTraceServiceResponse), "logs": (ExportLogsServiceRequest, ExportLogsServiceResponse)}


def _hex_ids(node: Any) -> None:
    """Protobuf's JSON mapping writes ids as base64; OTLP JSON (and our reader) uses hex."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids(item)


def decode(signal: str, content_type: str, body: bytes) -> dict[str, Any]:
    """One request body -> an OTLP JSON export dict; unreadable -> BadPayload."""
    if content_type.startswith(PROTOBUF):
        from google.protobuf.json_format import MessageToDict
        from google.protobuf.message import DecodeError

        request_type = _proto_messages()[signal][0]
        message = request_type()
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise BadPayload(f"not an OTLP protobuf {signal} request: {exc}") from exc
        export = MessageToDict(message)
        _hex_ids(export)
        return export
    if content_type.startswith("application/json") or not content_type:
        try:
            export = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise BadPayload(f"invalid JSON: {exc}") from exc
        key = "resourceSpans" if signal == "traces" else "resourceLogs"
        if not isinstance(export, dict) or not isinstance(export.get(key, []), list):
            raise BadPayload(f"not an OTLP JSON {signal} request (no '{key}' list)")
        return export
    raise BadPayload(f"unsupported Content-Type {content_type!r}; send application/x-protobuf or application/json")


def _inflate(encoding: str, body: bytes, limit: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadPayload(f"unsupported Content-Encoding {encoding!r}")
    try:
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        data = inflater.decompress(body, limit + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise BadPayload(f"corrupt {encoding} body: {exc}") from exc
    if len(data) > limit:
        raise BadPayload(f"request inflates beyond {limit} bytes")
    return data


class Collector:
    """Turns OTLP requests into stored spans and conversations; one request is stored at a time."""

    def __init__(self, store: Store, classify: Classifier, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.store = store
        self.classify = classify
        self.max_request_bytes = max_request_bytes
        self.stats = CollectorStats()
        self._lock = threading.Lock()

    def handle(self, path: str, content_type: str, encoding: str, body: bytes) -> tuple[int, bytes, str]:
        """(status, response body, response content type) for one POST; never raises."""
        signal = PATHS.get(path.split("?", 1)[0])
        if signal is None:
            return self._reject(404, f"unknown path {path!r}; POST /v1/traces or /v1/logs")
        try:
            export = decode(signal, content_type, _inflate(encoding, body, self.max_request_bytes))
            spans = list(export_spans(export, f"otlp:{signal}"))
        except BadPayload as exc:
            return self._reject(400, str(exc))
        except ConfigError as exc:
            return self._reject(415, str(exc))
        except RecursionError:
            return self._reject(400, "payload nested too deeply")
        try:
            with self._lock:
                stats = ingest_span_items(self.store, spans, IngestStats(), classify_batch(self.store, self.classify))
        except Exception as exc:  # noqa: BLE001 - a failed write is answered 503 (the exporter retries), never a crash
            log.exception("could not store an OTLP request")
            return self._reject(503, f"could not store the request: {type(exc).__name__}: {exc}", count=False)
        with self._lock:
            self.stats.requests += 1
            self.stats.spans += len(spans)
            self.stats.conversations_new += stats.ingested
            self.stats.conversations_updated += stats.updated
            for kind, n in stats.failures.items():
                self.stats.failures[kind] = self.stats.failures.get(kind, 0) + n
        return 200, self._success(signal, content_type), PROTOBUF if content_type.startswith(PROTOBUF) else "application/json"

    def _success(self, signal: str, content_type: str) -> bytes:
        if content_type.startswith(PROTOBUF):
            return _proto_messages()[signal][1]().SerializeToString()
        return b"{}"

    def _reject(self, status: int, reason: str, count: bool = True) -> tuple[int, bytes, str]:
        with self._lock:
            if count:
                self.stats.rejected += 1
            self.stats.last_error = reason
        return status, json.dumps({"code": status, "message": reason}).encode(), "application/json"


def _handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self._reply(*collector._reject(411, "Content-Length required"), close=True)
                return
            size = int(length)
            if size > collector.max_request_bytes:
                if size <= DRAIN_LIMIT_BYTES:  # read it away, so the client sees the 413 rather than a broken pipe
                    left = size
                    while left > 0 and (chunk := self.rfile.read(min(1 << 16, left))):
                        left -= len(chunk)
                self._reply(*collector._reject(413, f"request of {size} bytes is over the {collector.max_request_bytes}-byte cap"), close=True)
                return
            body = self.rfile.read(size)
            self._reply(*collector.handle(self.path, self.headers.get("Content-Type", ""), self.headers.get("Content-Encoding", ""), body))

        def do_GET(self) -> None:  # noqa: N802
            self._reply(*collector._reject(405, "POST OTLP requests to /v1/traces or /v1/logs"), close=False)

        def _reply(self, status: int, body: bytes, content_type: str, close: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # library code never prints
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler


def make_server(collector: Collector, host: str = "127.0.0.1", port: int = 4318) -> ThreadingHTTPServer:
    """A threading HTTP server for ``collector``; ``port=0`` picks a free port (``server.server_address``)."""
    server = ThreadingHTTPServer((host, port), _handler(collector))
    server.daemon_threads = True
    return server
