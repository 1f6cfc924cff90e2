r"""Start N JAX processes on this machine, as if each were a host of a multi-host job.

    python -m launch.local --processes 2 --devices-per-process 4 -- \
        python -m experiments.train --config experiments/configs/digits.py --workdir workdirs/digits

Process ``i`` gets ``BILINEAR_JAX_COORDINATOR=127.0.0.1:PORT``, ``BILINEAR_JAX_NUM_PROCESSES=N``
and ``BILINEAR_JAX_PROCESS_ID=i``, which :func:`bilinear_jax.training.distributed.initialize`
reads to call ``jax.distributed.initialize`` (with gloo collectives on CPU). Devices:

* ``--platform cpu``: each process gets ``M`` fake CPU devices (``XLA_FLAGS``);
* ``--platform gpu``: each process gets ``M`` GPUs (``CUDA_VISIBLE_DEVICES``): this is how to
  run one process per GPU group on a single multi-GPU node.

Output lines are prefixed with ``[i]``. If one process fails, the others are stopped and the
launcher exits with the failing code; SIGINT/SIGTERM are passed on to every process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from typing import Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def detect_platform() -> str:
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        if listed.strip():
            return "gpu"
    return "cpu"


def process_env(index: int, args: argparse.Namespace, port: int, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update({
        "BILINEAR_JAX_COORDINATOR": f"127.0.0.1:{port}",
        "BILINEAR_JAX_NUM_PROCESSES": str(args.processes),
        "BILINEAR_JAX_PROCESS_ID": str(index),
    })
    if args.platform == "cpu":
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
        env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={args.devices_per_process}"])
        env["JAX_PLATFORMS"] = "cpu"
    else:
        first = index * args.devices_per_process
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(first + d) for d in range(args.devices_per_process))
    return env


def _pump(index: int, stream, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"[{index}] {line}")
        out.flush()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m launch.local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, required=True, help="number of processes (hosts) to start")
    parser.add_argument("--devices-per-process", type=int, default=1, help="devices each process sees")
    parser.add_argument("--platform", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument("--port", type=int, default=0, help="coordinator port (default: a free one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command every process runs")
    args = parser.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        parser.error("give the command to run after --, e.g. -- python -m experiments.train ...")
    if args.processes < 1 or args.devices_per_process < 1:
        parser.error("--processes and --devices-per-process must be at least 1")
    if args.platform == "auto":
        args.platform = detect_platform()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    port = args.port or free_port()
    children = [
        subprocess.Popen(args.command, env=process_env(i, args, port, dict(os.environ)), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, bufsize=1)
        for i in range(args.processes)
    ]
    pumps = [threading.Thread(target=_pump, args=(i, c.stdout, sys.stdout), daemon=True) for i, c in enumerate(children)]
    for pump in pumps:
        pump.start()

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        remaining = set(range(len(children)))
        while remaining:
            for i in list(remaining):
                try:
                    code = children[i].wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                remaining.discard(i)
                if code != 0 and exit_code == 0:
                    exit_code = code if code > 0 else 128 - code
                    print(f"[launch.local] process {i} exited with {code}; stopping the others.", file=sys.stderr)
                    for j in remaining:
                        children[j].terminate()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for pump in pumps:
            pump.join(timeout=5)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
