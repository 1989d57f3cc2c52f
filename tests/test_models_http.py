"""HTTP endpoints: progenitor.serve exposes a model, the ``http`` loader reads it back black-box."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import torch

from progenitor.errors import AccessError, EndpointError, ProbeError
from progenitor.models import load
from progenitor.models.callable import from_object
from progenitor.models.http import HTTPModel
from progenitor.models.torch_module import module_model
from progenitor.serve import serve

# (method, path, number of earlier requests to that path) -> (status, body, seconds to wait first)
Respond = Callable[[str, str, int], tuple[int, bytes, float]]


@pytest.fixture(scope="module")
def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


@pytest.fixture
def probes() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32)


class FakeEndpoint:
    """A scripted server: ``respond`` decides each answer; ``calls`` counts requests per path."""

    def __init__(self, respond: Respond) -> None:
        self.calls: dict[str, int] = {}
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen = endpoint.calls.get(self.path, 0)
                endpoint.calls[self.path] = seen + 1
                status, body, delay = respond(method, self.path, seen)
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, *_: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, *_: Any) -> None:
                pass  # a client that timed out leaves a broken pipe behind; expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Callable[[Respond], FakeEndpoint]]:
    started: list[FakeEndpoint] = []

    def start(respond: Respond) -> FakeEndpoint:
        started.append(FakeEndpoint(respond))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


def _forward_answer(body: object, status: int = 200, delay: float = 0.0) -> Respond:
    """An endpoint without /info whose /forward always answers ``body`` (JSON unless bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    def respond(method: str, _path: str, _seen: int) -> tuple[int, bytes, float]:
        if method == "GET":
            return 404, b"", 0.0
        return status, raw, delay

    return respond


def test_served_model_matches_local(mlp: torch.nn.Module, probes: np.ndarray) -> None:
    local = module_model(mlp, input_shape=(8,))
    with serve(local) as server:
        remote = load(server.url)
        assert isinstance(remote, HTTPModel)
        assert remote.format == "http" and remote.access == "black"
        assert remote.capabilities == frozenset({"forward"})
        assert remote.input_spec.kind == "tensor" and remote.input_spec.shape == (8,)
        assert remote.name == local.ref
        out = remote.forward(probes)
        assert out.dtype == np.float32 and out.shape == (30, 4)
        np.testing.assert_array_equal(out, local.forward(probes))
        # Exact equality only for the same batch: BLAS kernels differ with the batch size.
        again = load(server.url + "/").forward(probes[:3])
        np.testing.assert_allclose(again, out[:3], rtol=1e-5, atol=1e-6)
        with pytest.raises(AccessError):
            remote.weights()
        with pytest.raises(AccessError):
            remote.features(probes)


def test_batches_span_several_requests(mlp: torch.nn.Module, probes: np.ndarray) -> None:
    local = module_model(mlp, input_shape=(8,))
    sizes: list[int] = []

    def counted(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return local.forward(batch)

    with serve(from_object(counted, input_shape=(8,))) as server:
        out = load(server.url, batch_size=7).forward(probes)
    assert sizes == [7, 7, 7, 7, 2]
    np.testing.assert_allclose(out, local.forward(probes), rtol=1e-5, atol=1e-6)


def test_probes_checked_before_sending(mlp: torch.nn.Module) -> None:
    with serve(module_model(mlp, input_shape=(8,))) as server:
        remote = load(server.url)
        with pytest.raises(ProbeError, match=r"\[5\]"):
            remote.forward(np.zeros((2, 5), np.float32))
        with pytest.raises(ProbeError, match="text"):
            remote.forward(["a text"])
        with pytest.raises(ProbeError, match="NaN"):
            remote.forward(np.full((1, 8), np.nan, np.float32))


def test_server_errors_are_relayed(mlp: torch.nn.Module) -> None:
    # Without a declared shape the client sends anything; the model's refusal comes back as 422.
    with serve(module_model(mlp)) as server:
        remote = load(server.url)
        assert remote.input_spec.shape is None
        with pytest.raises(EndpointError, match=r"/forward: HTTP 422: .*\[5\]"):
            remote.forward(np.zeros((2, 5), np.float32))


def test_server_protocol_directly(mlp: torch.nn.Module) -> None:
    with serve(module_model(mlp, input_shape=(8,))) as server:
        with urllib.request.urlopen(server.url + "/info", timeout=5) as answer:
            assert json.loads(answer.read()) == {
                "input": "tensor",
                "input_shape": [8],
                "name": "<module>",
            }
        request = urllib.request.Request(server.url + "/forward", data=b"{oops", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 400 and "error" in json.loads(info.value.read())
        empty = urllib.request.Request(
            server.url + "/forward", data=b'{"inputs": []}', method="POST"
        )
        with urllib.request.urlopen(empty, timeout=5) as answer:
            assert json.loads(answer.read()) == {"outputs": []}


def test_text_endpoint() -> None:
    def featurize(texts: list[str]) -> np.ndarray:
        return np.array([[len(t), t.count("a"), t.count(" ")] for t in texts], np.float32)

    texts = ["a banana", "", "provenance of models", "ä unicode"]
    with serve(from_object(featurize, text=True)) as server:
        remote = load(server.url)
        assert remote.input_spec.kind == "text"
        np.testing.assert_array_equal(remote.forward(texts), featurize(texts))
        with pytest.raises(ProbeError, match=r"text.*tensor"):
            remote.forward(np.zeros((2, 3), np.float32))


def test_endpoint_without_info_uses_options(endpoint: Callable[[Respond], FakeEndpoint]) -> None:
    fake = endpoint(_forward_answer({"outputs": [[1.0, 2.0], [3.0, 4.0]]}))
    remote = load(fake.url, input_shape=(3,))
    assert remote.input_spec.shape == (3,) and remote.name is None
    np.testing.assert_array_equal(remote.forward(np.zeros((2, 3))), [[1, 2], [3, 4]])
    assert load(fake.url, text=True).forward(["x", "y"]).shape == (2, 2)


def test_timeout(endpoint: Callable[[Respond], FakeEndpoint]) -> None:
    fake = endpoint(_forward_answer({"outputs": [[1.0]]}, delay=2.0))
    remote = load(fake.url, timeout=0.2, retries=1)
    started = time.monotonic()
    with pytest.raises(EndpointError, match=r"127\.0\.0\.1.*/forward: no answer within 0\.2 s"):
        remote.forward(np.zeros((1, 2)))
    assert time.monotonic() - started < 1.5
    assert fake.calls["/forward"] == 2  # retried once


def test_connection_refused() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(EndpointError, match=rf"127\.0\.0\.1:{port}/info: cannot connect"):
        load(f"http://127.0.0.1:{port}", retries=0)


def test_http_500_is_retried_then_fails(endpoint: Callable[[Respond], FakeEndpoint]) -> None:
    fake = endpoint(_forward_answer({"error": "model exploded"}, status=500))
    remote = load(fake.url, retries=2)
    with pytest.raises(EndpointError, match=r"HTTP 500: model exploded, after 3 attempts"):
        remote.forward(np.zeros((1, 2)))
    assert fake.calls["/forward"] == 3


def test_transient_500_recovers(endpoint: Callable[[Respond], FakeEndpoint]) -> None:
    def flaky(method: str, _path: str, seen: int) -> tuple[int, bytes, float]:
        if method == "GET":
            return 404, b"", 0.0
        if seen == 0:
            return 503, b"busy", 0.0
        return 200, b'{"outputs": [[0.5]]}', 0.0

    fake = endpoint(flaky)
    assert load(fake.url).forward(np.zeros((1, 2))).tolist() == [[0.5]]
    assert fake.calls["/forward"] == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>surprise</html>", "not JSON"),
        ({"result": [[1.0], [2.0]]}, "no 'outputs'"),
        ({"outputs": "1, 2"}, "not a list of rows"),
        ({"outputs": [[1.0]]}, "1 output rows for 2 inputs"),
        ({"outputs": [[1.0], [2.0], [3.0]]}, "3 output rows for 2 inputs"),
        ({"outputs": [["a"], ["b"]]}, "non-numeric"),
        ({"outputs": [["1.5"], [2.0]]}, "non-numeric"),
        ({"outputs": [[None], [2.0]]}, "non-numeric"),
        ({"outputs": [[1.0, 2.0], [3.0]]}, "ragged"),
        ({"outputs": [[], []]}, "empty"),
        (b'{"outputs": [[NaN], [1.0]]}', "NaN"),
        (b'{"outputs": [[Infinity], [1.0]]}', "NaN or infinite"),
        ({"outputs": [[1e300], [1.0]]}, "infinite"),  # overflows float32
    ],
)
def test_bad_answers(
    endpoint: Callable[[Respond], FakeEndpoint], body: object, message: str
) -> None:
    fake = endpoint(_forward_answer(body))
    with pytest.raises(EndpointError, match=message) as info:
        load(fake.url, retries=0).forward(np.zeros((2, 2)))
    assert f"{fake.url}/forward" in str(info.value) and "\n" not in str(info.value)


def test_rows_must_agree_across_batches(endpoint: Callable[[Respond], FakeEndpoint]) -> None:
    def growing(method: str, _path: str, seen: int) -> tuple[int, bytes, float]:
        if method == "GET":
            return 404, b"", 0.0
        return 200, json.dumps({"outputs": [[0.0] * (seen + 1)]}).encode(), 0.0

    fake = endpoint(growing)
    with pytest.raises(EndpointError, match="rows of 2 values after rows of 1"):
        load(fake.url, batch_size=1).forward(np.zeros((2, 2)))


def test_client_error_is_not_retried(endpoint: Callable[[Respond], FakeEndpoint]) -> None:
    fake = endpoint(_forward_answer({"error": "too big"}, status=413))
    with pytest.raises(EndpointError, match=r"HTTP 413: too big .*smaller batch_size"):
        load(fake.url).forward(np.zeros((2, 2)))
    assert fake.calls["/forward"] == 1


def test_bad_info(endpoint: Callable[[Respond], FakeEndpoint]) -> None:
    fake = endpoint(lambda _method, _path, _seen: (200, b'{"input": "image"}', 0.0))
    with pytest.raises(EndpointError, match="/info: 'input' must be"):
        load(fake.url)


@pytest.mark.parametrize("url", ["http://", "http://localhost:abc", "http://host:99999"])
def test_unusable_urls(url: str) -> None:
    with pytest.raises(EndpointError, match="not a usable"):
        load(url)


def test_serve_command_serves_a_file_until_interrupted(saved, probes_array) -> None:
    """``progenitor serve`` (here as ``python -m progenitor.serve``) puts a model file behind the
    protocol, says where, and stops cleanly on Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "progenitor.serve", str(saved["parent"]), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    try:
        line = proc.stderr.readline()
        assert line.startswith("serving ") and " at http://127.0.0.1:" in line, line
        remote = load(line.split(" at ")[1].split()[0])
        np.testing.assert_allclose(remote.forward(probes_array), load(saved["parent"]).forward(probes_array), atol=1e-5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr.read()
