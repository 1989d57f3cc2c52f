"""Serve any progenitor Model over the JSON protocol that ``http://`` references speak.

``serve(model)`` starts a threaded stdlib HTTP server in a daemon thread and returns at once::

    server = serve(progenitor.models.load("model.pt", input_shape=(8,)))
    target = progenitor.models.load(server.url)   # the same model, black-box
    server.close()

From a shell: ``progenitor serve MODEL [--host H] [--port P] [--input-shape 1,28,28]`` (or
``python -m progenitor.serve ...``).
The protocol is documented in ``docs/HTTP.md``. The server has no authentication: keep it on
loopback or behind something that has.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import numpy as np

from progenitor.errors import AccessError, ProgenitorError
from progenitor.models.base import Model

MAX_BODY = 256 * 1024 * 1024  # refuse requests larger than this (413)
_log = logging.getLogger(__name__)


class _BadRequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def info_for(model: Model) -> dict[str, Any]:
    """The ``GET /info`` answer for ``model``."""
    spec = model.input_spec
    return {
        "input": spec.kind,
        "input_shape": list(spec.shape) if spec.kind == "tensor" and spec.shape else None,
        "name": model.ref,
    }


def _inputs(model: Model, body: bytes) -> np.ndarray | list[str]:
    """The request's inputs as the batch ``model.forward`` takes."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, "the request body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, 'expected {"inputs": [...]}')
    inputs = payload["inputs"]
    if model.input_spec.kind == "text":
        if not all(isinstance(t, str) for t in inputs):
            raise _BadRequestError(HTTPStatus.BAD_REQUEST, "this model takes a list of strings")
        return inputs
    try:
        array = np.array(inputs, dtype=np.float32)
    except (ValueError, TypeError):
        raise _BadRequestError(
            HTTPStatus.BAD_REQUEST, "inputs must be equally shaped nested lists of numbers"
        ) from None
    if array.ndim == 0:
        raise _BadRequestError(HTTPStatus.BAD_REQUEST, "inputs must be a list, one item per input")
    return array


class _Handler(BaseHTTPRequestHandler):
    server: _ModelHTTPServer

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/info":
            self._send(HTTPStatus.OK, info_for(self.server.model))
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/forward":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise _BadRequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large"
                )
            batch = _inputs(self.server.model, self.rfile.read(length))
            if len(batch) == 0:
                self._send(HTTPStatus.OK, {"outputs": []})
                return
            # One forward at a time: models are not promised to be thread-safe.
            with self.server.lock:
                outputs = self.server.model.forward(batch)
        except _BadRequestError as exc:
            self._send(exc.status, {"error": str(exc)})
        except ProgenitorError as exc:  # the inputs do not fit the model
            self._send(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": str(exc)})
        except Exception as exc:  # a server must answer, not die; the client sees a 500
            _log.exception("forward failed")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})
        else:
            self._send(HTTPStatus.OK, {"outputs": np.asarray(outputs, np.float32).tolist()})

    def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)


class _ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: Model) -> None:
        super().__init__(address, _Handler)
        self.model = model
        self.lock = threading.Lock()


class ModelServer:
    """A running server for one model: ``url``, ``close()``; usable as a context manager."""

    def __init__(self, model: Model, host: str = "127.0.0.1", port: int = 0) -> None:
        if not model.can("forward"):
            raise AccessError(f"{model.ref} cannot be served: it has no forward")
        self.model = model
        self._server = _ModelHTTPServer((host, port), model)
        bound_host, bound_port = self._server.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self.url = f"http://{shown}:{bound_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"progenitor-serve-{bound_port}", daemon=True
        )
        self._thread.start()

    def wait(self) -> None:
        """Block until the server stops (``close()`` from another thread, or Ctrl-C)."""
        self._thread.join()

    @property
    def port(self) -> int:
        """The port the server listens on (the one chosen when 0 was asked)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve(model: Model, host: str = "127.0.0.1", port: int = 0) -> ModelServer:
    """Serve ``model`` at ``http://host:port`` (port 0: any free one) until ``close()``."""
    return ModelServer(model, host, port)


def main(argv: list[str] | None = None) -> int:
    """``python -m progenitor.serve MODEL ...``: the same as ``progenitor serve MODEL ...``."""
    from progenitor.cli import main as cli_main

    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
