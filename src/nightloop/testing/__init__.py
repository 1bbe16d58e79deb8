"""Loopback fakes of the model providers' HTTP APIs, shipped so tests and benchmarks share them.

Each fake is a real HTTP server on 127.0.0.1 (a random port) served from a
background thread, so the real SDK clients talk to it over the wire with their
own retries and timeouts. Answers come from a queue of scripted :class:`Answer`
objects; when the queue is empty the fake echoes the last user message, or asks
``responder(request_json)``. Every request body is kept in ``requests`` and
counted in ``calls``.

    with FakeOpenAIServer() as fake:
        fake.push(Answer.error(429, headers={"retry-after": "0"}), Answer.text("hi"))
        provider = OpenAIProvider(RoleConfig(provider="openai", model="gpt-4o", base_url=fake.base_url), api_key="x")
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["Answer", "FakeAnthropicServer", "FakeLLMServer", "FakeOpenAIServer", "Responder"]


@dataclass
class Answer:
    """One scripted reply of a fake server; build with the class methods."""

    reply: str | None = None
    json_value: Any = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = ""
    delay_s: float = 0.0
    raw_body: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    content_type: str = "application/json"
    #: Seconds between the bytes of the body (a server trickling its answer).
    trickle_s: float = 0.0
    #: Send the headers and this many bytes of the body, then reset the connection.
    reset_after: int | None = None
    #: Render this provider's success body, then pass it through ``mutate`` (empty choices, wrong shapes...).
    mutate: Callable[[dict[str, Any]], Any] | None = None

    @classmethod
    def text(cls, reply: str, **kwargs: Any) -> Answer:
        return cls(reply=reply, **kwargs)

    @classmethod
    def json(cls, value: Any, **kwargs: Any) -> Answer:
        """A JSON answer: message text for OpenAI, the forced tool's input for Anthropic structured output."""
        return cls(json_value=value, **kwargs)

    @classmethod
    def tools(cls, *calls: tuple[str, dict[str, Any]], reply: str | None = None, **kwargs: Any) -> Answer:
        """The model calls tools: ``Answer.tools(("lookup_order", {"id": 42}))``."""
        return cls(reply=reply, tool_calls=list(calls), **kwargs)

    @classmethod
    def error(cls, status: int, *, headers: dict[str, str] | None = None, message: str = "") -> Answer:
        return cls(status=status, headers=dict(headers or {}), error_message=message or f"fake error {status}")

    @classmethod
    def slow(cls, delay_s: float, then: Answer | None = None) -> Answer:
        """Wait ``delay_s`` before answering (to force a client timeout)."""
        answer = then or cls(reply="late")
        answer.delay_s = delay_s
        return answer

    @classmethod
    def malformed(cls, body: str = '{"choices": [') -> Answer:
        """HTTP 200 whose body is not valid JSON."""
        return cls(raw_body=body)

    # --- faults (benchmarks/faults.py, tests of bounded waits) ---

    @classmethod
    def html(cls, status: int = 200) -> Answer:
        """An HTML page where an API answer was expected (a proxy's login or error page)."""
        return cls(status=status, raw_body="<!doctype html><html><body><h1>Sign in</h1></body></html>", content_type="text/html")

    @classmethod
    def trickle(cls, interval_s: float, then: Answer | None = None) -> Answer:
        """A good answer sent one byte every ``interval_s`` seconds: each read is quick, the whole is not."""
        answer = then or cls(reply="slowly")
        answer.trickle_s = interval_s
        return answer

    @classmethod
    def hang(cls, seconds: float = 3600.0) -> Answer:
        """Accept the request and say nothing (until the client gives up or the server closes)."""
        return cls.slow(seconds)

    @classmethod
    def reset_mid_body(cls, after_bytes: int = 20) -> Answer:
        """Start a good answer, then reset the connection."""
        return cls(reply="cut off", reset_after=after_bytes)

    @classmethod
    def reshaped(cls, mutate: Callable[[dict[str, Any]], Any], **kwargs: Any) -> Answer:
        """A well-formed response body changed by ``mutate`` (e.g. ``lambda body: {**body, "choices": []}``)."""
        return cls(mutate=mutate, **kwargs)

    def usage_for(self, request_text: str, reply_text: str) -> tuple[int, int]:
        """(input, output) tokens: the scripted counts, else about four characters a token."""
        input_tokens = self.input_tokens if self.input_tokens is not None else rough_tokens(request_text)
        output_tokens = self.output_tokens if self.output_tokens is not None else rough_tokens(reply_text)
        return input_tokens, output_tokens

    @property
    def content_text(self) -> str | None:
        if self.json_value is not None:
            return json.dumps(self.json_value)
        return self.reply


#: Builds the answer for a request when the queue is empty: an Answer, a text, or a JSON value.
Responder = Callable[[dict[str, Any]], "Answer | str | dict[str, Any] | list[Any]"]


def as_answer(value: Answer | str | dict[str, Any] | list[Any]) -> Answer:
    if isinstance(value, Answer):
        return value
    if isinstance(value, str):
        return Answer.text(value)
    return Answer.json(value)


def rough_tokens(text: str) -> int:
    """About four characters a token: enough for usage and budget tests."""
    return max(1, len(text) // 4)


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(str(b.get("text") or b.get("content") or "") for b in content if isinstance(b, dict))
    return ""


class FakeLLMServer:
    """A loopback HTTP server answering one provider's endpoint from a script; subclasses set the wire format."""

    path = "/"

    def __init__(self, *, responder: Responder | None = None, latency_s: float = 0.0) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.calls = 0
        self._ids = itertools.count(1)  # numbers the ids in rendered bodies
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -------------------------------------------------------------------------

    def push(self, *answers: Answer | str | dict[str, Any]) -> None:
        """Queue answers, served in order before the default answer."""
        with self._lock:
            self._answers.extend(as_answer(a) for a in answers)

    @property
    def pending(self) -> int:
        """Scripted answers not served yet."""
        with self._lock:
            return len(self._answers)

    def reset(self) -> None:
        with self._lock:
            self._answers.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.calls = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake server is not started; use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What to pass as the SDK's ``base_url``."""
        return self.url

    def start(self) -> Self:
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server = server
        self._stop.clear()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes handlers that are sleeping on a delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- serving -----------------------------------------------------------------------------

    def next_answer(self, request: dict[str, Any]) -> Answer:
        with self._lock:
            self.calls += 1
            self.requests.append(request)
            scripted = self._answers.popleft() if self._answers else None
        if scripted is not None:
            return scripted
        if self.responder is not None:
            return as_answer(self.responder(request))
        return Answer.text(f"echo: {last_user_text(request.get('messages') or [])}")

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)

    def render(self, request: dict[str, Any], answer: Answer) -> dict[str, Any]:
        """The success body for ``answer`` in this provider's wire format."""
        raise NotImplementedError

    def render_error(self, answer: Answer) -> dict[str, Any]:
        raise NotImplementedError


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 stalls bursts of concurrent connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (its own timeout) is not an error here; nothing is printed."""


def _handler_for(fake: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in one write: two small writes meet delayed ACKs and cost ~40 ms a call.
        wbufsize = -1
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.split("?")[0].rstrip("/") != fake.path:
                self._send(404, {"error": {"message": f"fake serves POST {fake.path}, not {self.path}"}})
                return
            try:
                request = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {"error": {"message": "request body is not JSON"}})
                return
            with fake._lock:
                fake.request_headers.append({k.lower(): v for k, v in self.headers.items()})
            answer = fake.next_answer(request)
            fake.wait(fake.latency_s + answer.delay_s)
            if fake._stop.is_set():
                return
            if answer.raw_body is not None:
                self._send_raw(answer.status, answer.raw_body.encode(), answer.headers, answer)
            elif answer.status >= 400:
                self._send(answer.status, fake.render_error(answer), answer.headers, answer)
            else:
                body = fake.render(request, answer)
                self._send(answer.status, answer.mutate(body) if answer.mutate else body, answer.headers, answer)

        def _send(self, status: int, body: Any, headers: dict[str, str], answer: Answer) -> None:
            self._send_raw(status, json.dumps(body).encode(), headers, answer)

        def _send_raw(self, status: int, payload: bytes, headers: dict[str, str], answer: Answer) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if answer.reset_after is not None:
                    self.wfile.write(payload[: answer.reset_after])
                    self.wfile.flush()
                    self._reset()
                elif answer.trickle_s > 0:
                    self._trickle(payload, answer.trickle_s)
                else:
                    self.wfile.write(payload)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout): nothing to answer

        def _trickle(self, payload: bytes, interval_s: float) -> None:
            self.wfile.flush()
            for index in range(len(payload)):
                if fake._stop.wait(interval_s):
                    return
                self.wfile.write(payload[index : index + 1])
                self.wfile.flush()

        def _reset(self) -> None:
            """Close with RST (linger 0), as a crashed proxy would."""
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
            """Silent: library code never prints."""

    return Handler


from nightloop.testing.fake_anthropic import FakeAnthropicServer  # noqa: E402  (subclasses of the base above)
from nightloop.testing.fake_openai import FakeOpenAIServer  # noqa: E402
