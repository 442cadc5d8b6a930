"""Where optional data files are, for the tests that need them: skip with the reason when absent
(a fresh user's machine), fail only in CI, whose .ci/run installs Debian's Fashion-MNIST."""

import os

import pytest


def fashion_mnist_root() -> str:
    """Debian's dataset-fashion-mnist folder, or skip (hidden by --without-system-data too)."""
    from bench.datasets.files import FashionMnist

    roots = FashionMnist.system_roots
    if not roots:
        pytest.skip("system data hidden (--without-system-data)")
    root = roots[0]
    if not (root / "t10k-images-idx3-ubyte.gz").exists():
        if os.environ.get("CI"):
            pytest.fail(".ci/run must install the Debian package dataset-fashion-mnist")
        pytest.skip("dataset-fashion-mnist is not installed")
    return str(root)
