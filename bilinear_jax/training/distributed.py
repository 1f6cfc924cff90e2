"""Multi-process start-up: ``jax.distributed.initialize`` for TPU pods, SLURM and explicit hosts.

* Explicit: a coordinator address, process count and id, from arguments or the environment
  variables that :mod:`launch.local` sets (``BILINEAR_JAX_COORDINATOR``,
  ``BILINEAR_JAX_NUM_PROCESSES``, ``BILINEAR_JAX_PROCESS_ID``). On CPU the gloo collectives
  are switched on, so N local processes behave like N hosts.
* Auto-detected: on Cloud TPU VMs and under SLURM, JAX finds the cluster by itself.
* Otherwise: a single process, and nothing to do.

Call it before anything touches a JAX backend.
"""

from __future__ import annotations

import os

import jax

COORDINATOR_ENV = "BILINEAR_JAX_COORDINATOR"
NUM_PROCESSES_ENV = "BILINEAR_JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "BILINEAR_JAX_PROCESS_ID"


def _on_cluster() -> bool:
    tpu_pod = "TPU_WORKER_HOSTNAMES" in os.environ or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ
    slurm = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    return tpu_pod or slurm


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join the process group if this is a multi-process run; a no-op for a single process."""
    coordinator = coordinator or os.environ.get(COORDINATOR_ENV)
    if coordinator:
        num_processes = int(num_processes if num_processes is not None else os.environ[NUM_PROCESSES_ENV])
        process_id = int(process_id if process_id is not None else os.environ[PROCESS_ID_ENV])
        # Only the CPU backend reads this; GPUs and TPUs keep their own collectives.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
    elif _on_cluster():
        jax.distributed.initialize()

