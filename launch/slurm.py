r"""Multi-node GPU training under SLURM: write an sbatch script and submit it.

    python -m launch.slurm --nodes N --gpus-per-node G [--partition P] [--time T] [--dry-run] \
        -- COMMAND

The script asks for ``N`` nodes with ``G`` GPUs each and starts the command with ``srun``, one
task per node (JAX's usual layout: one process drives all the GPUs of its host) or, with
``--task-per gpu``, one task per GPU. Each task gets the coordinator environment that
:func:`bilinear_jax.training.distributed.initialize` reads, evaluated inside the task:

* ``BILINEAR_JAX_COORDINATOR``: the first node of the job, at ``--port`` (by default a port
  derived from the job id, so two jobs sharing a node do not collide),
* ``BILINEAR_JAX_NUM_PROCESSES``: ``$SLURM_NTASKS``,
* ``BILINEAR_JAX_PROCESS_ID``: ``$SLURM_PROCID``.

A command that starts with an option is the arguments of ``python -m experiments.train``. The
script is written to ``--script`` (default ``logs/slurm/JOB_NAME.sbatch``) and submitted with
``sbatch``; SLURM's output goes to ``logs/slurm/JOB_NAME-JOBID.out``. ``--dry-run`` prints the
script and the ``sbatch`` command and writes nothing.

Example, two nodes of eight GPUs with the workdir on GCS::

    python -m launch.slurm --nodes 2 --gpus-per-node 8 --partition gpu --time 04:00:00 -- \
        --config experiments/configs/lm.py --workdir gs://BUCKET/runs/lm --config.mesh.data=16
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Sequence

from launch.common import LaunchError, execute, parse_env, quote_command, split_command, training_command

# What an #SBATCH value may contain: sbatch reads these lines itself, so no newlines or spaces.
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:@%+=/\[\]-]+\Z")
_TIME = re.compile(r"(?:[0-9]+-)?[0-9]+(?::[0-9]+){0,2}\Z|UNLIMITED\Z|INFINITE\Z")
_SBATCH_FLAG = re.compile(r"--[a-z][-a-z]*(?:=[^\s]+)?\Z")

# The srun task body: runs once per task, so $SLURM_PROCID is each task's own. The training
# command arrives as the positional parameters ("$@"), never re-parsed by a shell.
TASK_SCRIPT = (
    'export BILINEAR_JAX_COORDINATOR="$BILINEAR_JAX_COORDINATOR_HOST:$BILINEAR_JAX_PORT"'
    ' BILINEAR_JAX_NUM_PROCESSES="$SLURM_NTASKS" BILINEAR_JAX_PROCESS_ID="$SLURM_PROCID"; '
    'exec "$@"'
)


def sbatch_script(args: argparse.Namespace, command: Sequence[str]) -> str:
    """The text of the sbatch script for ``args`` running ``command``."""
    per_gpu = args.task_per == "gpu"
    tasks_per_node = args.gpus_per_node if per_gpu else 1
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={args.job_name}",
        f"#SBATCH --nodes={args.nodes}",
        f"#SBATCH --ntasks-per-node={tasks_per_node}",
    ]
    if per_gpu:  # SLURM binds one GPU to each task (CUDA_VISIBLE_DEVICES)
        lines.append("#SBATCH --gpus-per-task=1")
    else:
        lines.append(f"#SBATCH --gpus-per-node={args.gpus_per_node}")
    if args.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={args.cpus_per_task}")
    if args.partition:
        lines.append(f"#SBATCH --partition={args.partition}")
    if args.account:
        lines.append(f"#SBATCH --account={args.account}")
    if args.time:
        lines.append(f"#SBATCH --time={args.time}")
    lines.append(f"#SBATCH --output={args.output}")
    lines += [f"#SBATCH {flag}" for flag in args.sbatch_flag]
    lines += [
        "",
        "set -eo pipefail",
        f"cd {shlex.quote(args.chdir)}",
    ]
    lines += [f"module load {shlex.quote(module)}" for module in args.module]
    if args.venv:
        lines.append(f". {shlex.quote(os.path.join(args.venv, 'bin', 'activate'))}")
    else:
        lines.append("if [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi")
    for key, value in args.env:
        lines.append(f"export {key}={shlex.quote(value)}")
    port = str(args.port) if args.port else "$((20000 + SLURM_JOB_ID % 20000))"
    lines += [
        "",
        "# The coordinator is process 0, on the first node of the job.",
        'export BILINEAR_JAX_COORDINATOR_HOST="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"',
        f'export BILINEAR_JAX_PORT="{port}"',
        'echo "coordinator $BILINEAR_JAX_COORDINATOR_HOST:$BILINEAR_JAX_PORT, $SLURM_NTASKS tasks"',
        "",
        f"srun --nodes={args.nodes} --ntasks-per-node={tasks_per_node} --kill-on-bad-exit=1 \\",
        f"    bash -c {shlex.quote(TASK_SCRIPT)} bilinear-jax-task \\",
        f"    {quote_command(command)}",
        "",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m launch.slurm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, required=True, help="Number of nodes.")
    parser.add_argument("--gpus-per-node", type=int, required=True, help="GPUs on each node.")
    parser.add_argument("--partition", help="SLURM partition.")
    parser.add_argument("--time", help="Time limit, e.g. 04:00:00 or 1-00:00:00.")
    parser.add_argument("--account", help="SLURM account to charge.")
    parser.add_argument("--job-name", default="bilinear-jax")
    parser.add_argument("--cpus-per-task", type=int)
    parser.add_argument("--task-per", choices=("node", "gpu"), default="node",
                        help="One process per node (default) or per GPU.")
    parser.add_argument("--port", type=int, help="Coordinator port (default: from the job id).")
    parser.add_argument("--chdir", default=os.getcwd(), help="Directory to run in (default: here).")
    parser.add_argument("--venv", help="Virtual environment to activate (default: .venv if there is one).")
    parser.add_argument("--module", action="append", default=[], help="`module load` this (repeatable).")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="Environment variable for the tasks (repeatable).")
    parser.add_argument("--sbatch-flag", action="append", default=[], metavar="--FLAG[=VALUE]",
                        help="Extra #SBATCH line, e.g. --sbatch-flag=--exclusive (repeatable).")
    parser.add_argument("--script", help="Where to write the script (default: logs/slurm/JOB_NAME.sbatch).")
    parser.add_argument("--output", help="SLURM output file (default: logs/slurm/%%x-%%j.out).")
    parser.add_argument("--dry-run", action="store_true", help="Print the script and sbatch command.")
    return parser


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse and check ``argv``; bad input exits with code 2 before anything is printed."""
    parser = _parser()
    own, command = split_command(argv)
    args = parser.parse_args(own)
    if args.nodes < 1:
        parser.error("--nodes must be at least 1")
    if args.gpus_per_node < 1:
        parser.error("--gpus-per-node must be at least 1")
    if args.cpus_per_task is not None and args.cpus_per_task < 1:
        parser.error("--cpus-per-task must be at least 1")
    if args.port is not None and not 1024 <= args.port <= 65535:
        parser.error("--port must be in 1024..65535")
    if args.time is not None and not _TIME.match(args.time):
        parser.error(f"--time {args.time!r} is not a SLURM time such as 04:00:00 or 1-00:00:00")
    args.chdir = os.path.abspath(args.chdir)
    args.output = args.output or os.path.join("logs", "slurm", "%x-%j.out")
    args.script = args.script or os.path.join("logs", "slurm", f"{args.job_name}.sbatch")
    for option in ("job_name", "partition", "account", "output"):
        value = getattr(args, option)
        if value is not None and not _SBATCH_VALUE.match(value):
            parser.error(f"--{option.replace('_', '-')} {value!r} may not hold spaces, quotes or newlines")
    for flag in args.sbatch_flag:
        if not _SBATCH_FLAG.match(flag):
            parser.error(f"--sbatch-flag {flag!r} is not a single --flag[=value]")
    for option in ("chdir", "venv", "script"):
        value = getattr(args, option)
        if value is not None and (not value or "\n" in value or "\0" in value):
            parser.error(f"--{option} {value!r} is not a usable path")
    args.env = parse_env(args.env, parser)
    command = training_command(command)
    if not command:
        parser.error("a command is needed after --, e.g. -- --config experiments/configs/lm.py "
                     "--workdir gs://BUCKET/lm")
    return args, command


def main(argv: Sequence[str] | None = None) -> int:
    args, command = parse(sys.argv[1:] if argv is None else argv)
    script = sbatch_script(args, command)
    submit = ["sbatch", args.script]
    if args.dry_run:
        print(script)
        execute([submit], dry_run=True)
        return 0
    try:
        os.makedirs(os.path.dirname(args.script) or ".", exist_ok=True)
        # SLURM does not create the output's directory; a relative one is relative to here.
        os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
        with open(args.script, "w", encoding="utf-8") as f:
            f.write(script)
        print(f"wrote {args.script}", file=sys.stderr)
        execute([submit], dry_run=False)
    except (OSError, LaunchError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
