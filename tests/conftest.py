"""Test-wide set-up: 8 fake CPU devices for sharding tests, set before JAX is imported."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: minutes-long checks at full scale; excluded from CI, run with `pytest -m slow tests`")
