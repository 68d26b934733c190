"""One switch for the CPU fast paths of the I3D layers, so that a benchmark can time them
against the kernels the network used before (2026-11-30) in one process.

Within `baseline_kernels()`: BatchNorm + ReLU is `F.relu(bn(x))` (torch's kernels, a separate
ReLU) and SAME max-pooling pads a copy of its input whenever the padding is asymmetric. The
fast paths compute the same values (tests/models/test_batchnorm.py, test_pooling.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_ENABLED = True


def enabled() -> bool:
    return _ENABLED


@contextlib.contextmanager
def baseline_kernels() -> Iterator[None]:
    """Within the block the I3D layers run the 2026-11-30 way (see the module docstring)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = before
