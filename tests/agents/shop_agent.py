"""A team's own agent, as a team would write it: plain Python, its own tool, no nightloop imports.

It answers price questions for a shop. Its tool looks the item up in the catalogue; what it does with the
price depends on its instructions (the prompt under test): quote it as stored (net), including VAT, or in
cents. ``serve`` puts the same agent behind a small JSON-over-HTTP endpoint on loopback.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CATALOGUE = {
    "mug": {"net": 10.0, "vat_rate": 0.2},
    "lamp": {"net": 25.0, "vat_rate": 0.2},
    "kettle": {"net": 40.0, "vat_rate": 0.2},
    "scarf": {"net": 15.0, "vat_rate": 0.2},
    "book": {"net": 8.0, "vat_rate": 0.0},
    "atlas": {"net": 30.0, "vat_rate": 0.0},
    "bread": {"net": 3.0, "vat_rate": 0.0},
}


def price_tool(item: str) -> dict:
    """The agent's own tool: the catalogue entry of ``item``."""
    return {"item": item, **CATALOGUE[item]}


def respond(prompt: str, messages: list[dict], variables: dict) -> dict:
    """Answer the last user message under ``prompt``."""
    question = messages[-1]["content"].lower()
    item = next((name for name in CATALOGUE if re.search(rf"\b{name}\b", question)), None)
    if item is None:
        return {"answer": "Which item do you mean?"}
    call = {"id": "call-1", "type": "function", "function": {"name": "price_tool", "arguments": json.dumps({"item": item})}}
    found = price_tool(item)
    price = found["net"]
    instructions = prompt.lower()
    if "including vat" in instructions:
        price = price * (1 + found["vat_rate"])
    if "in cents" in instructions:
        price = price * 100
    answer = f"The {item} costs <solution> {price:.2f} </solution> at {variables.get('shop', 'our shop')}."
    return {
        "answer": answer,
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call-1", "content": json.dumps(found)},
            {"role": "assistant", "content": answer},
        ],
        "tokens": 50,
        "latency_ms": 120.0,  # the agent reports its own time (a sub-millisecond wall clock is all noise)
    }


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.requests.append(body)  # type: ignore[attr-defined]
        if self.server.fail_first and len(self.server.requests) == 1:  # type: ignore[attr-defined]
            self.send_response(503)
            self.end_headers()
            return
        answer = respond(body["prompt"], body["messages"], body["variables"])
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args) -> None:
        pass


class serve:
    """``with serve() as server: server.url`` — the agent on 127.0.0.1 at a free port, stopped on exit."""

    def __init__(self, fail_first: bool = False) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.requests = []  # type: ignore[attr-defined]
        self.httpd.fail_first = fail_first  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/agent"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> list[dict]:
        return self.httpd.requests  # type: ignore[attr-defined]

    def __enter__(self) -> serve:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
