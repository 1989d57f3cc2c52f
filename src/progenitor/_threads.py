"""One BLAS thread for numpy while torch computes beside it (``single_blas``).

On a machine with few cores, OpenBLAS's worker threads keep spinning for a while after each
numpy product and compete with torch's threads for the same cores: on 2 cores a model's forward
pass ran 1.5-2.5x slower inside DNA extraction than alone. The genes' numpy work is small
matrices, which one thread does as fast; torch's own thread count is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_controller: Any = None


@contextmanager
def single_blas() -> Iterator[None]:
    """numpy/scipy BLAS limited to one thread inside the block (torch's threads untouched)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # found once: scanning the loaded libraries costs 0.5 ms
    with _controller.limit(limits=1, user_api="blas"):
        yield
