r"""Cloud TPU VMs: create, set up, train, watch, copy back, delete, all through ``gcloud``.

    python -m launch.tpu SUBCOMMAND --name NAME --zone ZONE --accelerator TYPE [--dry-run] [-- COMMAND]

Subcommands (each takes ``--dry-run``, which prints the exact commands and runs nothing):

``create``  create the VM (``--spot`` for a spot VM, ``--queued`` for a queued resource;
            ``--version`` picks the runtime, by default one that suits the accelerator)
``status``  describe the VM (or the queued resource, with ``--queued``)
``setup``   on every worker: fetch the code (``--repo URL [--ref REF]``, or ``--source DIR``
            packed and uploaded with ``gcloud compute tpus tpu-vm scp --worker=all``), create a
            virtual environment and install the package with the ``tpu`` extra
``run``     on every worker: run the command after ``--`` in the code directory, its output
            appended to ``--log`` (foreground, or ``--detach`` to return at once). No
            coordinator flags are needed: ``jax.distributed`` finds the pod by itself. A
            command that starts with an option is the arguments of ``python -m experiments.train``.
``logs``    tail the log of a worker (``--worker 0`` by default, or ``all``; ``-f`` follows)
``copy``    copy a workdir back: ``gcloud storage rsync`` for ``gs://`` workdirs, otherwise
            ``gcloud compute tpus tpu-vm scp`` from one worker (0 by default)
``delete``  delete the VM (``--queued``: the queued resource and its VM)

Example, a v5e pod slice on spot capacity with its results on GCS::

    python -m launch.tpu create --name bj --zone us-west4-a --accelerator v5litepod-16 --spot
    python -m launch.tpu setup  --name bj --zone us-west4-a --repo https://github.com/ORG/bilinear-jax
    python -m launch.tpu run    --name bj --zone us-west4-a --detach -- \
        --config experiments/configs/lm.py --workdir gs://BUCKET/runs/lm --config.mesh.data=16
    python -m launch.tpu logs   --name bj --zone us-west4-a -f
    python -m launch.tpu copy   --name bj --zone us-west4-a --workdir gs://BUCKET/runs/lm --dest workdirs
    python -m launch.tpu delete --name bj --zone us-west4-a

On a multi-host slice every worker writes its share of each checkpoint, so use a ``gs://``
workdir there; a local workdir is fine on a single-host VM (e.g. ``v5litepod-8``).
Remote paths (``--remote-dir``, ``--log``, a relative ``--workdir``) are relative to the home
directory (``--remote-dir``) or to the code directory (the others); ``~/`` is understood.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import shlex
import sys
import tempfile
from collections.abc import Sequence

from launch.common import (
    LaunchError,
    execute,
    export_env,
    parse_env,
    quote_command,
    split_command,
    training_command,
)

_NAME = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?\Z")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]\Z")
_ACCELERATOR = re.compile(r"v[0-9]+[a-z]*-[0-9]+\Z")
_WORKER = re.compile(r"(?:all|[0-9]+)\Z")

DEFAULT_RUNTIME = "tpu-ubuntu2204-base"
# Runtime images by TPU generation (https://cloud.google.com/tpu/docs/runtimes).
_RUNTIMES = {
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5e": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}
SOURCE_EXCLUDES = (".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis",
                   "workdirs", "build", "dist")


def default_runtime(accelerator: str) -> str:
    """The TPU software version for an accelerator type such as ``v4-8`` or ``v6e-16``."""
    return _RUNTIMES.get(accelerator.rsplit("-", 1)[0], DEFAULT_RUNTIME)


def remote_path(path: str) -> str:
    """``path`` as one word of a remote shell command; a leading ``~/`` becomes ``"$HOME"/``."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


# ---------------------------------------------------------------------------------------------
# Command builders: pure functions of the parsed arguments, returning argv lists.


def _location(args: argparse.Namespace) -> list[str]:
    flags = ["--zone", args.zone]
    if args.project:
        flags += ["--project", args.project]
    return flags


def ssh(args: argparse.Namespace, remote_command: str, worker: str = "all") -> list[str]:
    """``gcloud compute tpus tpu-vm ssh`` running one shell command string on ``worker``."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, *_location(args),
            f"--worker={worker}", "--command", remote_command]


def _scp(args: argparse.Namespace, sources: Sequence[str], dest: str, worker: str,
         recurse: bool) -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "scp", *(["--recurse"] if recurse else []),
            *sources, dest, *_location(args), f"--worker={worker}"]


def create_commands(args: argparse.Namespace) -> list[list[str]]:
    version = args.version or default_runtime(args.accelerator)
    spot = ["--spot"] if args.spot else []
    if args.queued:
        return [["gcloud", "compute", "tpus", "queued-resources", "create", args.name,
                 "--node-id", args.name, *_location(args), "--accelerator-type", args.accelerator,
                 "--runtime-version", version, *spot]]
    return [["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, *_location(args),
             "--accelerator-type", args.accelerator, "--version", version, *spot]]


def status_commands(args: argparse.Namespace) -> list[list[str]]:
    kind = ["queued-resources"] if args.queued else ["tpu-vm"]
    return [["gcloud", "compute", "tpus", *kind, "describe", args.name, *_location(args)]]


def delete_commands(args: argparse.Namespace) -> list[list[str]]:
    if args.queued:  # --force also deletes the VM the queued resource made
        return [["gcloud", "compute", "tpus", "queued-resources", "delete", args.name,
                 *_location(args), "--quiet", "--force"]]
    return [["gcloud", "compute", "tpus", "tpu-vm", "delete", args.name, *_location(args), "--quiet"]]


def _install_script(args: argparse.Namespace) -> str:
    """Shell commands, run in the code directory: a virtual environment with the package."""
    spec = shlex.quote(f".[{args.extra}]")
    if args.installer == "uv":
        # TPU runtime images ship Python 3.10 and the package needs 3.11+: uv fetches one.
        uv = '"$HOME"/.local/bin/uv'
        python = shlex.quote(args.python or "3.11")
        return " && ".join([
            # Newer images mark the system Python as externally managed; --user is still fine.
            "{ python3 -m pip install --user --quiet --upgrade uv"
            " || python3 -m pip install --user --quiet --upgrade --break-system-packages uv; }",
            f"{uv} venv --allow-existing --python {python} .venv",
            f"{uv} pip install --python .venv/bin/python -e {spec}",
        ])
    python = shlex.quote(args.python or "python3")
    return " && ".join([
        f"{python} -m venv .venv",
        ".venv/bin/python -m pip install --quiet --upgrade pip",
        f".venv/bin/python -m pip install -e {spec}",
    ])


def setup_commands(args: argparse.Namespace) -> list[list[str]]:
    code = remote_path(args.remote_dir)
    install = _install_script(args)
    if args.repo:
        ref = shlex.quote(args.ref or "HEAD")
        repo = shlex.quote(args.repo)
        script = " && ".join([
            f"{{ test -d {code}/.git || git clone --quiet {repo} {code}; }}",
            f"cd {code}",
            f"git remote set-url origin {repo}",
            f"git fetch --quiet origin {ref}",
            "git checkout --quiet --detach FETCH_HEAD",
            install,
        ])
        return [ssh(args, script)]
    # --source: pack the tree (without virtual environments, caches and git), upload, unpack.
    tarball = os.path.join(tempfile.gettempdir(), f"bilinear-jax-{args.name}-source.tar.gz")
    remote_tarball = f"bilinear-jax-{args.name}-source.tar.gz"  # in the home directory
    tar = ["tar", "-czf", tarball, *(f"--exclude={pattern}" for pattern in SOURCE_EXCLUDES),
           "-C", args.source, "."]
    script = " && ".join([
        f"mkdir -p {code}",
        f"tar -xzf {shlex.quote(remote_tarball)} -C {code}",
        f"rm -f {shlex.quote(remote_tarball)}",
        f"cd {code}",
        install,
    ])
    return [tar, _scp(args, [tarball], f"{args.name}:{remote_tarball}", "all", recurse=False),
            ssh(args, script)]


def run_script(args: argparse.Namespace, command: Sequence[str]) -> str:
    """The remote shell command of ``run``: ``command`` in the code directory, logged."""
    log = remote_path(args.log)
    log_dir = remote_path(posixpath.dirname(args.log) or ".")
    steps = [f"cd {remote_path(args.remote_dir)}", ". .venv/bin/activate"]
    if args.env:
        steps.append(export_env(args.env))
    steps.append(f"mkdir -p {log_dir}")
    quoted = quote_command(command)
    if args.detach:
        steps.append(f"{{ nohup {quoted} >> {log} 2>&1 < /dev/null & }}")
        steps.append(f'echo "started on $(hostname): pid $!, log" {log}')
    else:
        steps.append("set -o pipefail")
        steps.append(f"{quoted} 2>&1 | tee -a {log}")
    return " && ".join(steps)


def run_commands(args: argparse.Namespace, command: Sequence[str]) -> list[list[str]]:
    return [ssh(args, run_script(args, command))]


def logs_commands(args: argparse.Namespace) -> list[list[str]]:
    follow = " -F" if args.follow else ""
    script = f"cd {remote_path(args.remote_dir)} && tail -n {args.lines}{follow} {remote_path(args.log)}"
    return [ssh(args, script, worker=args.worker)]


def copy_commands(args: argparse.Namespace) -> list[list[str]]:
    workdir = args.workdir.rstrip("/")
    if workdir.startswith("gs://"):
        dest = posixpath.join(args.dest, posixpath.basename(workdir))
        return [["gcloud", "storage", "rsync", "--recursive", workdir, dest]]
    if not (workdir.startswith("/") or workdir.startswith("~")):
        workdir = posixpath.join(args.remote_dir, workdir)  # `run` works in the code directory
    return [_scp(args, [f"{args.name}:{workdir}"], args.dest, args.worker, recurse=True)]


# ---------------------------------------------------------------------------------------------
# Command line.


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", required=True, help="TPU VM (and queued resource) name.")
    common.add_argument("--zone", required=True, help="e.g. us-central2-b.")
    common.add_argument("--accelerator", help="Accelerator type, e.g. v4-8, v5litepod-16, v6e-8.")
    common.add_argument("--project", help="Google Cloud project (default: gcloud's).")
    common.add_argument("--dry-run", action="store_true", help="Print the commands; run nothing.")
    code = argparse.ArgumentParser(add_help=False)
    code.add_argument("--remote-dir", default="bilinear-jax",
                      help="Code directory on the workers, relative to the home directory.")
    logged = argparse.ArgumentParser(add_help=False)
    logged.add_argument("--log", default="logs/train.log",
                        help="Log file on the workers, relative to the code directory.")

    parser = argparse.ArgumentParser(prog="python -m launch.tpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("create", parents=[common], help="Create the TPU VM.")
    p.add_argument("--version", help="Runtime version (default: by accelerator type).")
    p.add_argument("--spot", action="store_true", help="Spot capacity (preemptible).")
    p.add_argument("--queued", action="store_true", help="Create through a queued resource.")

    p = sub.add_parser("status", parents=[common], help="Describe the TPU VM or queued resource.")
    p.add_argument("--queued", action="store_true")

    p = sub.add_parser("setup", parents=[common, code], help="Install the package on all workers.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--repo", help="Git URL to clone on every worker.")
    source.add_argument("--source", help="Local source tree to upload.")
    p.add_argument("--ref", help="Branch, tag or commit to check out (with --repo; default HEAD).")
    p.add_argument("--extra", default="tpu", help="Package extra to install (default: tpu).")
    p.add_argument("--installer", choices=("uv", "pip"), default="uv",
                   help="uv (default; fetches Python 3.11 if the image lacks it) or venv + pip.")
    p.add_argument("--python", help="uv: Python version (3.11); pip: interpreter (python3).")

    p = sub.add_parser("run", parents=[common, code, logged],
                       help="Run the command after -- on all workers.",
                       epilog="-- COMMAND: what to run, e.g. -- --config experiments/configs/lm.py "
                              "--workdir gs://BUCKET/lm (a command starting with an option is the "
                              "arguments of python -m experiments.train).")
    p.add_argument("--detach", action="store_true", help="Start in the background and return.")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="Environment variable for the command (repeatable).")

    p = sub.add_parser("logs", parents=[common, code, logged], help="Tail the training log.")
    p.add_argument("--worker", default="0", help="Worker index, or all (default: 0).")
    p.add_argument("--lines", "-n", type=int, default=100)
    p.add_argument("--follow", "-f", action="store_true")

    p = sub.add_parser("copy", parents=[common, code], help="Copy a workdir back.")
    p.add_argument("--workdir", required=True, help="gs:// path, or a path on the workers.")
    p.add_argument("--dest", default="workdirs", help="Local directory to copy into.")
    p.add_argument("--worker", default="0", help="Worker to copy from (non-GCS workdirs).")

    p = sub.add_parser("delete", parents=[common], help="Delete the TPU VM.")
    p.add_argument("--queued", action="store_true", help="Delete the queued resource and its VM.")
    return parser, dict(sub.choices)


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse and check ``argv``; bad input exits with code 2 before anything is printed."""
    parser, subparsers = _parser()
    own, command = split_command(argv)
    args = parser.parse_args(own)
    sub = subparsers[args.subcommand]  # its usage line goes with its errors
    if not _NAME.match(args.name):
        sub.error(f"--name {args.name!r}: lowercase letters, digits and hyphens, starting with a letter")
    if not _ZONE.match(args.zone):
        sub.error(f"--zone {args.zone!r} is not a zone such as us-central2-b")
    if args.accelerator is not None and not _ACCELERATOR.match(args.accelerator):
        sub.error(f"--accelerator {args.accelerator!r} is not a type such as v4-8 or v5litepod-16")
    if args.subcommand == "create" and args.accelerator is None:
        sub.error("create needs --accelerator")
    if args.project is not None and not re.match(r"[a-z][-a-z0-9.:]*\Z", args.project):
        sub.error(f"--project {args.project!r} is not a project id")
    if hasattr(args, "worker") and not _WORKER.match(args.worker):
        sub.error(f"--worker {args.worker!r}: a worker index or all")
    if args.subcommand == "copy" and args.worker == "all":
        sub.error("copy takes one --worker")
    if args.subcommand == "logs" and args.lines < 1:
        sub.error("--lines must be positive")
    if args.subcommand == "setup" and args.ref and not args.repo:
        sub.error("--ref goes with --repo")
    if args.subcommand == "setup" and args.source and not os.path.isdir(args.source):
        sub.error(f"--source {args.source!r} is not a directory")
    for option in ("remote_dir", "log", "workdir"):
        value = getattr(args, option, None)
        if value is not None and (not value or "\n" in value or "\0" in value):
            sub.error(f"--{option.replace('_', '-')} {value!r} is not a usable path")
    if args.subcommand == "run":
        args.env = parse_env(args.env, sub)
        command = training_command(command)
        if not command:
            sub.error("run needs a command after --, e.g. -- --config experiments/configs/digits.py "
                      "--workdir gs://BUCKET/digits")
    elif command:
        sub.error(f"{args.subcommand} takes no command after --")
    return args, command


def commands(args: argparse.Namespace, command: Sequence[str] = ()) -> list[list[str]]:
    """Every external command of a subcommand, in order."""
    builders = {"create": create_commands, "status": status_commands, "setup": setup_commands,
                "logs": logs_commands, "copy": copy_commands, "delete": delete_commands}
    if args.subcommand == "run":
        return run_commands(args, command)
    return builders[args.subcommand](args)


def main(argv: Sequence[str] | None = None) -> int:
    args, command = parse(sys.argv[1:] if argv is None else argv)
    if args.subcommand == "copy" and not args.dry_run and not args.dest.startswith("gs://"):
        os.makedirs(args.dest, exist_ok=True)
    try:
        execute(commands(args, command), args.dry_run)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
