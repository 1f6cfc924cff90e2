"""Training as users run it, in real processes: SIGKILL and resume, SIGTERM, multi-process, the CLI."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import COLLECTIVE_TIMEOUT_FLAG
from tests.training_helpers import SMALL_DIGITS_FLAGS, cli_overrides, losses, snapshot

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "experiments.train", "--config", "experiments/configs/digits.py"]
# Long enough that a kill lands mid-run, short enough to finish in seconds.
LONG_RUN = {**SMALL_DIGITS_FLAGS, "num_steps": 600, "checkpoint_every": 50, "eval_every": 600}


def env(devices: int = 1) -> dict[str, str]:
    flags = f"--xla_force_host_platform_device_count={devices} {COLLECTIVE_TIMEOUT_FLAG}"
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}


def run_cli(workdir: Path, flags: dict, devices: int = 1, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(TRAIN + ["--workdir", str(workdir)] + cli_overrides(flags), cwd=ROOT, env=env(devices),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(workdir: Path, flags: dict) -> subprocess.Popen:
    return subprocess.Popen(TRAIN + ["--workdir", str(workdir)] + cli_overrides(flags), cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_checkpoint(workdir: Path, step: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (workdir / "checkpoints" / str(step)).exists():
        assert process.poll() is None, f"the run ended before checkpoint {step}:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, f"no checkpoint {step} after {timeout} s"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[int, float]:
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli(workdir, LONG_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    return losses(workdir)


def test_sigkill_then_resume_gives_bitwise_identical_losses(uninterrupted, tmp_path):
    process = start_cli(tmp_path, LONG_RUN)
    wait_for_checkpoint(tmp_path, 100, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL  # killed mid-run, not finished
    killed_at = max(losses(tmp_path))
    assert killed_at < 600

    result = run_cli(tmp_path, LONG_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = losses(tmp_path)
    assert sorted(resumed) == sorted(uninterrupted) == list(range(1, 601))
    assert all(resumed[s] == uninterrupted[s] for s in uninterrupted)  # bitwise, every step


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(uninterrupted, tmp_path):
    process = start_cli(tmp_path, LONG_RUN)
    wait_for_checkpoint(tmp_path, 50, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]
    assert "Stopping at step" in output
    stopped_at = max(losses(tmp_path))
    assert stopped_at < 600 and (tmp_path / "checkpoints" / str(stopped_at)).exists()

    result = run_cli(tmp_path, LONG_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = losses(tmp_path)
    assert all(resumed[s] == uninterrupted[s] for s in uninterrupted)


def test_two_processes_match_one_process(tmp_path):
    flags = {**SMALL_DIGITS_FLAGS, "num_steps": 20, "mesh.num_devices": -1}
    multi = tmp_path / "multi"
    launched = subprocess.run(
        [sys.executable, "-m", "launch.local", "--processes", "2", "--devices-per-process", "2", "--platform", "cpu", "--"]
        + TRAIN + ["--workdir", str(multi)] + cli_overrides(flags),
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert "[0] done: step 20" in launched.stdout and "[1] done" not in launched.stdout  # only process 0 reports
    single = tmp_path / "single"
    result = run_cli(single, flags, devices=4)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = losses(multi), losses(single)
    assert sorted(a) == sorted(b) == list(range(1, 21))
    np.testing.assert_allclose([a[s] for s in b], list(b.values()), rtol=2e-5)


@pytest.mark.parametrize("flags, devices, message", [
    ({"mesh.data": 3}, 8, "needs 3 devices but 8 are available"),
    ({"batch_size": 100, "mesh.data": 8}, 8, "not divisible by the data-parallel size 8"),
    ({"no_such_key": 1}, 1, "unknown config key 'no_such_key'"),
    ({"data.name": "nope"}, 1, "Unknown dataset 'nope'"),
])
def test_bad_input_gets_one_line_and_exit_code_2(tmp_path, flags, devices, message):
    workdir = tmp_path / "run"
    result = run_cli(workdir, flags, devices=devices)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert "Traceback" not in result.stderr
    assert not workdir.exists()


def test_incompatible_workdir_is_refused_and_left_untouched(tmp_path):
    first = run_cli(tmp_path, {**SMALL_DIGITS_FLAGS, "num_steps": 10})
    assert first.returncode == 0, first.stderr[-3000:]
    before = snapshot(tmp_path)
    result = run_cli(tmp_path, {**SMALL_DIGITS_FLAGS, "model.d_hidden": 8})
    assert result.returncode == 2 and "incompatible model" in result.stderr.splitlines()[-1]
    assert snapshot(tmp_path) == before


def test_a_missing_config_file_gets_one_line(tmp_path):
    command = [sys.executable, "-m", "experiments.train", "--config", str(tmp_path / "missing.py"),
               "--workdir", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # exactly one line
    assert result.stderr.startswith("error: cannot load the --config file") and "Traceback" not in result.stderr
