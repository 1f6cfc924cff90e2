"""Helpers shared by the cloud launchers (:mod:`launch.tpu`, :mod:`launch.slurm`).

Every external command is an argv list. In a dry run it is printed with :func:`shlex.join`
(so the printed line pastes into a shell unchanged); otherwise it runs with
``subprocess.run(argv, check=True)``. Commands that run in a *remote* shell (``gcloud ... ssh
--command``, ``srun bash -c``) are single strings in which every user-supplied piece goes
through :func:`shlex.quote`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

TRAIN_MODULE = ("python", "-m", "experiments.train")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class LaunchError(Exception):
    """A command failed; the launcher reports it as one line and a non-zero exit code."""


def split_command(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``[launcher options] -- [command]`` at the first ``--``.

    Returns the launcher's own options and the command after ``--`` (empty if there is none).
    """
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def training_command(command: Sequence[str]) -> list[str]:
    """The command to run; a command that starts with an option is taken as the arguments of
    ``python -m experiments.train`` (so ``-- --config C --workdir W`` is enough)."""
    command = list(command)
    if command and command[0].startswith("-"):
        return [*TRAIN_MODULE, *command]
    return command


def quote_command(argv: Sequence[str]) -> str:
    """One shell word per argument: the shell that reads the result sees exactly ``argv``."""
    return shlex.join(list(argv))


def parse_env(items: Sequence[str], parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """``KEY=VALUE`` strings (from a repeatable ``--env``) as pairs; bad names are a usage error."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(key):
            parser.error(f"--env wants NAME=VALUE with NAME a shell variable name, got {item!r}")
        pairs.append((key, value))
    return pairs


def export_env(pairs: Sequence[tuple[str, str]]) -> str:
    """``export K='V' ...`` for a remote shell ('' if there are no pairs)."""
    if not pairs:
        return ""
    return "export " + " ".join(f"{key}={shlex.quote(value)}" for key, value in pairs)


def execute(commands: Sequence[Sequence[str]], dry_run: bool) -> None:
    """Print (dry run) or run each command in order, stopping at the first failure."""
    for argv in commands:
        argv = list(argv)
        if dry_run:
            print(shlex.join(argv))
            continue
        print("+ " + shlex.join(argv), file=sys.stderr, flush=True)
        try:
            subprocess.run(argv, check=True)
        except FileNotFoundError as err:
            raise LaunchError(f"{argv[0]} not found: is it installed and on PATH?") from err
        except subprocess.CalledProcessError as err:
            raise LaunchError(f"{shlex.join(argv[:4])} ... exited with status {err.returncode}") from err
