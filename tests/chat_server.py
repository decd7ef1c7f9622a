"""A scripted OpenAI-compatible server for tests: the standard library's http.server on
127.0.0.1 in a thread, speaking the chat-completions wire format (with `tool_calls`) and
`GET /v1/models`, so the real `openai` SDK talks to it over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"  # a reply that never comes: the connection stays open until the server stops
Reply = tuple[int, dict, dict] | str


def completion(message: dict) -> tuple[int, dict, dict]:
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message},
                     "finish_reason": "tool_calls" if "tool_calls" in message else "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }  # fmt: skip
    return 200, body, {}


def call(name: str, arguments: dict | str, id: str = "call_1") -> dict:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id, "type": "function", "function": {"name": name, "arguments": text}}


def tool_calls(*calls: dict) -> tuple[int, dict, dict]:
    return completion({"content": None, "tool_calls": list(calls)})


def propose(config: str, description: str = "try bc5cdr first", id: str = "call_1"):
    return tool_calls(call("propose_experiment", {"config_yaml": config,
                                                  "description": description}, id))  # fmt: skip


def text(content: str) -> tuple[int, dict, dict]:
    return completion({"content": content})


def error(status: int, message: str, code: str | None = None) -> tuple[int, dict, dict]:
    """OpenAI's error shape; a tiny retry-after keeps the SDK's own retries quick."""
    body = {"error": {"message": message, "type": "error", "param": None, "code": code}}
    return status, body, {"retry-after-ms": "1"}


class ChatServer:
    """Answers chat completions from `replies` (a queue, or a function of the request body)
    and records every request. With `key`, any other bearer token gets a 401 that echoes it
    (as some servers do), to show the key never reaches an error message."""

    def __init__(self, replies: list[Reply] | Callable[[dict], Reply], models=("test-model",),
                 key: str | None = None):  # fmt: skip
        self.replies = replies if callable(replies) else list(replies)
        self.models, self.key = models, key
        self.requests: list[dict] = []
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def reply(self, body: dict) -> Reply:
        self.requests.append(body)
        return self.replies(body) if callable(self.replies) else self.replies.pop(0)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models" or server.models is None:
                    return self._send(404, {"error": "404 page not found"})
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"}
                        for m in server.models]  # fmt: skip
                self._send(200, {"object": "list", "data": data})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                given = self.headers.get("Authorization", "")
                if server.key and given != f"Bearer {server.key}":
                    return self._send(*error(401, f"Incorrect API key provided: {given[7:]}"))
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": "404 page not found"})
                reply = server.reply(body)
                if reply == HANG:
                    server.stopping.wait(60)
                    return
                self._send(*reply)

            def _send(self, status: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        return Handler
