"""Black-box HTTP endpoints speaking progenitor's JSON protocol (``docs/HTTP.md``).

``GET {url}/info`` (optional) describes the input; ``POST {url}/forward`` with
``{"inputs": [...]}`` answers ``{"outputs": [[...], ...]}``, one row per input. Only outputs are
available (black-box). Requests go in batches, with a timeout, and are retried with exponential
backoff on connection errors, timeouts and 5xx answers; whatever still fails, or answers something
that is not one finite numeric row per input, raises EndpointError naming the URL.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np

from progenitor.errors import EndpointError, ProbeError
from progenitor.models._registry import register_format
from progenitor.models.base import Batch, InputSpec, Model, text_batch

BATCH_SIZE = 64
BACKOFF_S = 0.25  # first retry waits this long, each further one twice as long
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_USER_AGENT = "progenitor-http/1"


@dataclass
class _Answer:
    status: int
    body: bytes


class _Client:
    """JSON over HTTP with timeout, retries and backoff; every failure becomes EndpointError."""

    def __init__(self, url: str, timeout: float, retries: int) -> None:
        self.url = url
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        host = urllib.parse.urlsplit(url).hostname or ""
        # A proxy from the environment must not intercept a local server.
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def call(self, path: str, payload: Any = None) -> _Answer:
        """GET (payload None) or POST JSON to ``url + path``; 4xx answers come back, not raised."""
        where = self.url + path
        data = None if payload is None else json.dumps(payload, allow_nan=False).encode()
        failure = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            request = urllib.request.Request(where, data=data, method="GET" if data is None else "POST")
            request.add_header("Accept", "application/json")
            request.add_header("User-Agent", _USER_AGENT)
            if data is not None:
                request.add_header("Content-Type", "application/json")
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return _Answer(response.status, response.read())
            except urllib.error.HTTPError as exc:
                body = _error_body(exc)
                if exc.code < 500:
                    return _Answer(exc.code, body)
                failure = f"HTTP {exc.code}{_excerpt(body)}"
            except TimeoutError:
                failure = f"no answer within {self.timeout:g} s"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    failure = f"no answer within {self.timeout:g} s"
                else:
                    failure = f"cannot connect ({exc.reason})"
            except (OSError, http.client.HTTPException) as exc:  # reset or cut off mid-answer
                failure = f"connection failed ({type(exc).__name__}: {exc})"
        tries = self.retries + 1
        raise EndpointError(f"{where}: {failure}, after {tries} attempt{'s' * (tries > 1)}")


def _error_body(exc: urllib.error.HTTPError) -> bytes:
    """The body of an error answer, or nothing if it cannot be read either."""
    try:
        return exc.read() if exc.fp is not None else b""
    except (OSError, http.client.HTTPException):
        return b""


def _excerpt(body: bytes, limit: int = 120) -> str:
    """A short one-line quote of an answer body for error messages (the server's error if JSON)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            text = parsed["error"]
    except ValueError:
        pass
    text = " ".join(text.split())
    if not text:
        return ""
    return f": {text[:limit]}{'...' if len(text) > limit else ''}"


def _decode(where: str, answer: _Answer) -> Any:
    try:
        return json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        raise EndpointError(f"{where}: the answer is not JSON{_excerpt(answer.body)}") from None


def _rows(where: str, outputs: Any, n: int) -> np.ndarray:
    """Validate ``outputs`` as ``n`` equally long, finite numeric rows; ``(n, k)`` float32."""
    if not isinstance(outputs, list):
        raise EndpointError(f"{where}: 'outputs' is a {type(outputs).__name__}, not a list of rows")
    if len(outputs) != n:
        raise EndpointError(f"{where}: {len(outputs)} output rows for {n} inputs")
    try:
        array = np.array(outputs)
    except ValueError:
        raise EndpointError(f"{where}: output rows are ragged (not all the same length)") from None
    if array.dtype.kind not in "iuf":
        # Strings, nulls and mixed rows come out as str or object arrays; numpy would otherwise
        # happily turn "1.5" into a number.
        raise EndpointError(f"{where}: output rows hold non-numeric values")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        array = array.reshape(n, -1).astype(np.float32)
    if array.shape[1] == 0:
        raise EndpointError(f"{where}: output rows are empty")
    if not np.isfinite(array).all():
        raise EndpointError(f"{where}: outputs hold NaN or infinite values")
    return array


@dataclass
class HTTPModel(Model):
    """A model behind an HTTP endpoint: outputs only (black-box)."""

    name: str | None = None
    timeout: float = 10.0
    retries: int = 2
    batch_size: int = BATCH_SIZE

    def __post_init__(self) -> None:
        self.capabilities = frozenset({"forward"})
        self._client = _Client(self.ref, self.timeout, self.retries)

    def forward(self, batch: Batch) -> np.ndarray:
        """POST the batch to ``/forward`` in chunks of ``batch_size``; ``(n, k)`` float32."""
        items = self._items(batch)
        if not items:
            raise ProbeError(f"{self.ref}: the probe set is empty")
        where = self.ref + "/forward"
        chunks = []
        for begin in range(0, len(items), self.batch_size):
            chunk = items[begin : begin + self.batch_size]
            answer = self._client.call("/forward", {"inputs": chunk})
            if answer.status >= 400:
                hint = " (try a smaller batch_size)" if answer.status == 413 else ""
                raise EndpointError(f"{where}: HTTP {answer.status}{_excerpt(answer.body)}{hint}")
            body = _decode(where, answer)
            if not isinstance(body, dict) or "outputs" not in body:
                raise EndpointError(f"{where}: the answer has no 'outputs'{_excerpt(answer.body)}")
            rows = _rows(where, body["outputs"], len(chunk))
            if chunks and rows.shape[1] != chunks[0].shape[1]:
                raise EndpointError(f"{where}: rows of {rows.shape[1]} values after rows of {chunks[0].shape[1]}")
            chunks.append(rows)
        return np.concatenate(chunks)

    def _items(self, batch: Batch) -> list[Any]:
        """The batch as JSON values, checked against the endpoint's input."""
        spec = self.input_spec
        if spec.kind == "text":
            return text_batch(batch, self.ref)
        if not isinstance(batch, np.ndarray):
            raise ProbeError(f"{self.ref} takes {spec.describe()} inputs, got a text probe set")
        if spec.shape is not None and tuple(batch.shape[1:]) != spec.shape:
            raise ProbeError(
                f"probe set of shape {list(batch.shape[1:])} does not fit {self.ref}, which takes {spec.describe()}"
            )
        array = np.asarray(batch, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ProbeError(f"{self.ref}: the probe set holds NaN or infinite values")
        return array.tolist()


def _info(client: _Client) -> dict[str, Any]:
    """The endpoint's ``/info`` answer, or {} when it has none (any 4xx)."""
    where = client.url + "/info"
    answer = client.call("/info")
    if answer.status >= 400:
        return {}
    info = _decode(where, answer)
    if not isinstance(info, dict):
        raise EndpointError(f"{where}: expected a JSON object, got {type(info).__name__}")
    if info.get("input", "tensor") not in ("text", "tensor"):
        raise EndpointError(f'{where}: \'input\' must be "text" or "tensor", got {info["input"]!r}')
    shape = info.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and all(isinstance(d, int) and d > 0 for d in shape)):
        raise EndpointError(f"{where}: 'input_shape' must be a list of positive integers or null")
    return info


def _check_url(url: str) -> None:
    """EndpointError unless ``url`` is an http(s) URL with a host and a valid port."""
    try:
        parts = urllib.parse.urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        valid = False
    if not valid:
        raise EndpointError(f"{url!r} is not a usable http:// or https:// URL")


@register_format("http", description="black-box HTTP endpoint (progenitor JSON protocol)")
def open_http(
    url: str,
    timeout: float = 10.0,
    retries: int = 2,
    batch_size: int = BATCH_SIZE,
    input_shape: Any = None,
    text: bool | None = None,
    **_: Any,
) -> Model:
    """An endpoint at ``url``; ``text``/``input_shape`` override what its ``/info`` says."""
    url = url.rstrip("/")
    _check_url(url)
    if not (timeout > 0 and math.isfinite(timeout)):
        raise EndpointError(f"{url}: timeout must be a positive number of seconds, got {timeout}")
    client = _Client(url, timeout, retries)
    info = _info(client)
    is_text = text if text is not None else info.get("input") == "text"
    shape = input_shape if input_shape is not None else info.get("input_shape")
    spec = InputSpec("text") if is_text else InputSpec("tensor", tuple(shape) if shape else None)
    name = info.get("name")
    return HTTPModel(
        ref=url,
        format="http",
        input_spec=spec,
        name=name if isinstance(name, str) else None,
        timeout=float(timeout),
        retries=max(0, int(retries)),
        batch_size=max(1, int(batch_size)),
    )
