"""Test-wide set-up: 8 fake CPU devices for sharding tests, set before JAX is imported."""

import os

# A long collective timeout: on 2 loaded cores, 8 fake devices can take a while to meet at an
# all-reduce, and XLA's default aborts the process instead of waiting.
COLLECTIVE_TIMEOUT_FLAG = "--xla_cpu_collective_timeout_seconds=900"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=8 {COLLECTIVE_TIMEOUT_FLAG}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: minutes-long checks at full scale; excluded from CI, run with `pytest -m slow tests`")
