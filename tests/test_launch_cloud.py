"""The cloud launchers (launch.tpu, launch.slurm), through --dry-run: the exact gcloud, ssh and
sbatch commands, shell quoting of hostile input, and usage errors. Nothing calls gcloud, srun or
sbatch for real: `subprocess.run` is replaced by a function that fails the test, and the
end-to-end quoting checks run the generated shell text with a local bash and fake srun/scontrol.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys

import pytest

from launch import common, slurm, tpu

ZONE = "us-central2-b"
BASE = ["--name", "bj", "--zone", ZONE]
HOSTILE = [
    "--config.name=it's a \"test\"",
    "a b\tc",
    "x; rm -rf ~",
    "$(touch pwned)",
    "`id`",
    "line1\nline2",
    "$HOME ~ * ? [a] {b,c} | & > <",
    "",
    "--",
    "\\",
]
TRAIN = ["python", "-m", "experiments.train", "--config", "experiments/configs/digits.py",
         "--workdir", "gs://bucket/runs/digits"]
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
_SUBPROCESS_RUN = subprocess.run  # the real one, saved before the fixture below replaces it


@pytest.fixture(autouse=True)
def no_real_commands(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to run a command: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(common.subprocess, "run", refuse)


def tpu_dry(argv, capsys) -> list[list[str]]:
    """Run ``launch.tpu.main`` with --dry-run; return the printed commands, parsed back."""
    own, command = common.split_command(argv)
    assert tpu.main([*own, "--dry-run", "--", *command] if command else [*own, "--dry-run"]) == 0
    return parse_commands(capsys.readouterr().out)


def parse_commands(out: str) -> list[list[str]]:
    """Printed commands back as argv lists; a quoted argument may hold a newline."""
    commands, pending = [], None
    for line in out.splitlines():
        pending = line if pending is None else pending + "\n" + line
        try:
            commands.append(shlex.split(pending))
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        pending = None
    assert pending is None, f"unterminated command: {pending!r}"
    return commands


def remote(cmd: list[str]) -> str:
    """The --command string of a gcloud ssh argv."""
    assert cmd[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
    return cmd[cmd.index("--command") + 1]


def usage_error(module, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed before the error
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1
    return errors[0]


# --- create / status / delete ---------------------------------------------------------------

def test_create(capsys):
    [cmd] = tpu_dry(["create", *BASE, "--accelerator", "v4-8"], capsys)
    assert cmd == ["gcloud", "compute", "tpus", "tpu-vm", "create", "bj", "--zone", ZONE,
                   "--accelerator-type", "v4-8", "--version", "tpu-ubuntu2204-base"]


def test_create_spot_with_version_and_project(capsys):
    [cmd] = tpu_dry(["create", *BASE, "--accelerator", "v6e-8", "--spot", "--version", "v2-alpha-tpuv6e",
                     "--project", "my-proj"], capsys)
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "bj"]
    assert cmd[-1] == "--spot"
    assert cmd[cmd.index("--version") + 1] == "v2-alpha-tpuv6e"
    assert cmd[cmd.index("--project") + 1] == "my-proj"


def test_create_queued(capsys):
    [cmd] = tpu_dry(["create", *BASE, "--accelerator", "v5litepod-16", "--queued", "--spot"], capsys)
    assert cmd == ["gcloud", "compute", "tpus", "queued-resources", "create", "bj", "--node-id", "bj",
                   "--zone", ZONE, "--accelerator-type", "v5litepod-16",
                   "--runtime-version", "v2-alpha-tpuv5-lite", "--spot"]


@pytest.mark.parametrize("accelerator, runtime", [
    ("v2-8", "tpu-ubuntu2204-base"), ("v4-32", "tpu-ubuntu2204-base"), ("v5p-8", "v2-alpha-tpuv5"),
    ("v5litepod-8", "v2-alpha-tpuv5-lite"), ("v6e-16", "v2-alpha-tpuv6e")])
def test_default_runtime(accelerator, runtime):
    assert tpu.default_runtime(accelerator) == runtime


def test_no_spot_unless_asked(capsys):
    [cmd] = tpu_dry(["create", *BASE, "--accelerator", "v4-8", "--queued"], capsys)
    assert "--spot" not in cmd


def test_delete(capsys):
    assert tpu_dry(["delete", *BASE], capsys) == [
        ["gcloud", "compute", "tpus", "tpu-vm", "delete", "bj", "--zone", ZONE, "--quiet"]]
    assert tpu_dry(["delete", *BASE, "--queued"], capsys) == [
        ["gcloud", "compute", "tpus", "queued-resources", "delete", "bj", "--zone", ZONE, "--quiet", "--force"]]


def test_status(capsys):
    assert tpu_dry(["status", *BASE], capsys) == [
        ["gcloud", "compute", "tpus", "tpu-vm", "describe", "bj", "--zone", ZONE]]
    assert tpu_dry(["status", *BASE, "--queued"], capsys)[0][3] == "queued-resources"


# --- setup ----------------------------------------------------------------------------------

def test_setup_from_repo(capsys):
    [cmd] = tpu_dry(["setup", *BASE, "--repo", "https://github.com/org/bilinear-jax.git", "--ref", "v1.0"],
                    capsys)
    assert cmd[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "bj", "--zone", ZONE, "--worker=all"]
    words = shlex.split(remote(cmd))
    assert ["git", "clone", "--quiet", "https://github.com/org/bilinear-jax.git", "bilinear-jax;"] == \
        words[words.index("clone") - 1:words.index("clone") + 4]
    assert ["fetch", "--quiet", "origin", "v1.0"] == words[words.index("fetch"):words.index("fetch") + 4]
    assert ".[tpu]" in words and "-e" in words and "venv" in words


def test_setup_with_pip(capsys):
    [cmd] = tpu_dry(["setup", *BASE, "--repo", "https://x/y.git", "--installer", "pip"], capsys)
    script = remote(cmd)
    assert "python3 -m venv .venv" in script
    assert ".venv/bin/python -m pip install -e '.[tpu]'" in script
    assert "fetch --quiet origin HEAD" in script


def test_setup_from_source(capsys, tmp_path):
    tar, scp, ssh = tpu_dry(["setup", *BASE, "--source", str(tmp_path)], capsys)
    assert tar[:3] == ["tar", "-czf", tar[2]] and tar[-3:] == ["-C", str(tmp_path), "."]
    assert "--exclude=.venv" in tar and "--exclude=.git" in tar
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    assert scp[5] == tar[2] and scp[6].startswith("bj:")
    assert "--worker=all" in scp
    assert "--worker=all" in ssh
    assert f"tar -xzf {scp[6][3:]}" in remote(ssh)
    assert "'.[tpu]'" in remote(ssh)


def test_setup_needs_a_source(capsys):
    assert "--repo" in usage_error(tpu, ["setup", *BASE], capsys)
    usage_error(tpu, ["setup", *BASE, "--source", "/no/such/dir"], capsys)
    usage_error(tpu, ["setup", *BASE, "--repo", "u", "--source", "."], capsys)


# --- run ------------------------------------------------------------------------------------

def test_run_on_all_workers(capsys):
    [cmd] = tpu_dry(["run", *BASE, "--", *TRAIN], capsys)
    assert cmd[:9] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "bj", "--zone", ZONE, "--worker=all"]
    assert cmd[9] == "--command" and len(cmd) == 11
    script = remote(cmd)
    assert script.startswith("cd bilinear-jax && . .venv/bin/activate && ")
    assert shlex.join(TRAIN) + " 2>&1 | tee -a logs/train.log" in script
    assert "coordinator" not in script  # jax.distributed finds the pod by itself


def test_run_options_only_means_experiments_train(capsys):
    [cmd] = tpu_dry(["run", *BASE, "--", *TRAIN[3:]], capsys)
    assert shlex.join(TRAIN) in remote(cmd)


def test_run_detached(capsys):
    [cmd] = tpu_dry(["run", *BASE, "--detach", "--log", "logs/a.log", "--", *TRAIN], capsys)
    script = remote(cmd)
    assert f"{{ nohup {shlex.join(TRAIN)} >> logs/a.log 2>&1 < /dev/null & }}" in script
    assert "tee" not in script


@pytest.mark.parametrize("detach", [False, True])
def test_run_hostile_arguments_round_trip(capsys, detach):
    """The remote shell sees exactly the argv given after --, word for word."""
    command = ["python", "train.py", *HOSTILE]
    [cmd] = tpu_dry(["run", *BASE, *(["--detach"] if detach else []), "--env", "MSG=it's; $(x)",
                     "--remote-dir", "my code; $(x)", "--log", "l o g's.txt", "--", *command], capsys)
    words = shlex.split(remote(cmd))
    i = words.index("python")
    assert words[i:i + len(command)] == command
    assert words[:2] == ["cd", "my code; $(x)"]
    assert "MSG=it's; $(x)" in words
    assert "l o g's.txt" in words


@needs_bash
def test_run_on_hostile_input_with_bash(capsys, tmp_path):
    """Run the remote script with a real bash: the program gets the argv, the log its output."""
    code = tmp_path / "code dir; $(x)"
    (code / ".venv" / "bin").mkdir(parents=True)
    (code / ".venv" / "bin" / "activate").write_text("export ACTIVATED=yes\n")
    program = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['ACTIVATED'], os.environ['MSG']]))"
    [cmd] = tpu_dry(["run", *BASE, "--remote-dir", str(code), "--log", "out/l o g.txt",
                     "--env", "MSG=a'b $(c)", "--", sys.executable, "-c", program, *HOSTILE], capsys)
    proc = _real_run(["bash", "-c", remote(cmd)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = [HOSTILE, "yes", "a'b $(c)"]
    assert json.loads(proc.stdout) == expected
    assert json.loads((code / "out" / "l o g.txt").read_text()) == expected
    assert not (tmp_path / "pwned").exists() and not (code / "pwned").exists()


@needs_bash
def test_run_reports_the_training_exit_status(capsys, tmp_path):
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text("")
    [cmd] = tpu_dry(["run", *BASE, "--remote-dir", str(tmp_path), "--", "bash", "-c", "exit 3"], capsys)
    assert _real_run(["bash", "-c", remote(cmd)]).returncode == 3  # not tee's 0


def test_run_needs_a_command(capsys):
    assert "needs a command" in usage_error(tpu, ["run", *BASE], capsys)
    assert "needs a command" in usage_error(tpu, ["run", *BASE, "--dry-run", "--"], capsys)


def test_only_run_takes_a_command(capsys):
    usage_error(tpu, ["delete", *BASE, "--", "echo", "hi"], capsys)


# --- logs / copy ----------------------------------------------------------------------------

def test_logs(capsys):
    [cmd] = tpu_dry(["logs", *BASE], capsys)
    assert "--worker=0" in cmd
    assert remote(cmd) == "cd bilinear-jax && tail -n 100 logs/train.log"
    [cmd] = tpu_dry(["logs", *BASE, "--worker", "all", "-f", "-n", "20"], capsys)
    assert "--worker=all" in cmd
    assert remote(cmd) == "cd bilinear-jax && tail -n 20 -F logs/train.log"


def test_copy_from_gcs(capsys):
    assert tpu_dry(["copy", *BASE, "--workdir", "gs://bucket/runs/lm/", "--dest", "results"], capsys) == [
        ["gcloud", "storage", "rsync", "--recursive", "gs://bucket/runs/lm", "results/lm"]]


def test_copy_from_worker(capsys):
    assert tpu_dry(["copy", *BASE, "--workdir", "workdirs/lm", "--dest", "my results"], capsys) == [
        ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", "bj:bilinear-jax/workdirs/lm",
         "my results", "--zone", ZONE, "--worker=0"]]
    [cmd] = tpu_dry(["copy", *BASE, "--workdir", "/data/lm", "--worker", "1"], capsys)
    assert "bj:/data/lm" in cmd and "--worker=1" in cmd


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["create", "--zone", ZONE, "--accelerator", "v4-8"],              # no --name
    ["create", "--name", "bj", "--accelerator", "v4-8"],              # no --zone
    ["create", *BASE],                                                # no --accelerator
    ["create", "--name", "bj", "--zone", "uscentral2", "--accelerator", "v4-8"],
    ["create", "--name", "bj", "--zone", "us-central2-b; rm -rf ~", "--accelerator", "v4-8"],
    ["create", "--name", "Bad_Name", "--zone", ZONE, "--accelerator", "v4-8"],
    ["create", "--name", "bj;x", "--zone", ZONE, "--accelerator", "v4-8"],
    ["create", *BASE, "--accelerator", "tpu-8"],
    ["logs", *BASE, "--worker", "0;x"],
    ["copy", *BASE, "--workdir", "w", "--worker", "all"],
    ["frobnicate", *BASE],
    [],
])
def test_bad_input_is_a_usage_error(capsys, argv):
    usage_error(tpu, [*argv, "--dry-run"], capsys)


# --- SLURM ----------------------------------------------------------------------------------

def slurm_dry(argv, capsys) -> tuple[str, list[str]]:
    own, command = common.split_command(argv)
    assert slurm.main([*own, "--dry-run", "--", *command]) == 0
    out = capsys.readouterr().out
    script, _, last = out.removesuffix("\n").rpartition("\n")
    return script, shlex.split(last)


def sbatch_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_slurm_script(capsys):
    script, submit = slurm_dry(["--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu",
                                "--time", "04:00:00", "--", *TRAIN], capsys)
    assert script.startswith("#!/bin/bash\n")
    assert sbatch_lines(script) == [
        "#SBATCH --job-name=bilinear-jax", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --gpus-per-node=8", "#SBATCH --partition=gpu", "#SBATCH --time=04:00:00",
        "#SBATCH --output=logs/slurm/%x-%j.out"]
    assert submit == ["sbatch", "logs/slurm/bilinear-jax.sbatch"]
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1' in script
    assert "srun --nodes=4 --ntasks-per-node=1" in script
    assert 'BILINEAR_JAX_NUM_PROCESSES="$SLURM_NTASKS"' in script
    assert 'BILINEAR_JAX_PROCESS_ID="$SLURM_PROCID"' in script
    srun = shlex.split(script[script.index("srun "):].replace("\\\n", " "))
    assert srun[4:6] == ["bash", "-c"] and srun[6] == slurm.TASK_SCRIPT
    assert srun[8:] == TRAIN  # after the $0 placeholder


def test_slurm_task_per_gpu_and_options(capsys):
    script, submit = slurm_dry(["--nodes", "2", "--gpus-per-node", "4", "--task-per", "gpu",
                                "--account", "proj", "--job-name", "lm", "--port", "23456",
                                "--cpus-per-task", "8", "--sbatch-flag=--exclusive",
                                "--script", "jobs/lm.sbatch", "--", *TRAIN[3:]], capsys)
    lines = sbatch_lines(script)
    assert "#SBATCH --ntasks-per-node=4" in lines and "#SBATCH --gpus-per-task=1" in lines
    assert "#SBATCH --account=proj" in lines and "#SBATCH --job-name=lm" in lines
    assert "#SBATCH --cpus-per-task=8" in lines and "#SBATCH --exclusive" in lines
    assert 'export BILINEAR_JAX_PORT="23456"' in script
    assert "srun --nodes=2 --ntasks-per-node=4" in script
    assert submit == ["sbatch", "jobs/lm.sbatch"]
    assert shlex.join(TRAIN) in script  # options alone mean python -m experiments.train


def test_slurm_dry_run_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    slurm_dry(["--nodes", "1", "--gpus-per-node", "1", "--", "echo"], capsys)
    assert list(tmp_path.iterdir()) == []


@needs_bash
def test_slurm_hostile_command_with_fake_srun(capsys, tmp_path):
    """Run the script with bash, a fake srun (N tasks) and scontrol: each task gets the original
    argv and its own coordinator environment."""
    program = ("import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['BILINEAR_JAX_COORDINATOR'],"
               " os.environ['BILINEAR_JAX_NUM_PROCESSES'], os.environ['BILINEAR_JAX_PROCESS_ID'], os.environ['MSG']]))")
    script, _ = slurm_dry(["--nodes", "3", "--gpus-per-node", "8", "--chdir", str(tmp_path),
                           "--env", "MSG=a'b $(c)", "--", sys.executable, "-c", program, *HOSTILE], capsys)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(bin_dir / "scontrol", '#!/bin/bash\nprintf "gpu-node-7\\ngpu-node-8\\ngpu-node-9\\n"\n')
    _executable(bin_dir / "srun", "#!/bin/bash\n"
                "while [[ $1 == --* ]]; do shift; done\n"
                "for ((i = 0; i < SLURM_NTASKS; i++)); do SLURM_PROCID=$i \"$@\" || exit; done\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "1234",
           "SLURM_JOB_NODELIST": "gpu-node-[7-9]", "SLURM_NTASKS": "3"}
    proc = _real_run(["bash", "-c", script], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    port = 20000 + 1234 % 20000
    assert results == [[HOSTILE, f"gpu-node-7:{port}", "3", str(i), "a'b $(c)"] for i in range(3)]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("argv", [
    ["--gpus-per-node", "8", "--", "x"],                                    # no --nodes
    ["--nodes", "2", "--", "x"],                                            # no --gpus-per-node
    ["--nodes", "2", "--gpus-per-node", "8"],                               # no command
    ["--nodes", "0", "--gpus-per-node", "8", "--", "x"],
    ["--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu\n#SBATCH --x", "--", "x"],
    ["--nodes", "2", "--gpus-per-node", "8", "--job-name", "a b", "--", "x"],
    ["--nodes", "2", "--gpus-per-node", "8", "--time", "4 hours", "--", "x"],
    ["--nodes", "2", "--gpus-per-node", "8", "--sbatch-flag=--x\n--y", "--", "x"],
    ["--nodes", "2", "--gpus-per-node", "8", "--env", "1X=y", "--", "x"],
])
def test_slurm_bad_input(capsys, argv):
    usage_error(slurm, [*argv, "--dry-run"], capsys)


# --- helpers --------------------------------------------------------------------------------

def _real_run(argv, **kwargs):
    return _SUBPROCESS_RUN(argv, capture_output=True, text=True, timeout=60, **kwargs)


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# --- without --dry-run (subprocess.run recorded, never real) -------------------------------

@pytest.fixture
def recorded(monkeypatch):
    calls = []

    def record(argv, **kwargs):
        calls.append((argv, kwargs))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(common.subprocess, "run", record)
    return calls


def test_tpu_runs_what_dry_run_prints(capsys, recorded):
    argv = ["run", *BASE, "--", *TRAIN]
    printed = tpu_dry(argv, capsys)
    assert tpu.main(argv) == 0
    assert recorded == [(cmd, {"check": True}) for cmd in printed]


def test_tpu_failure_is_one_error_line(capsys, monkeypatch):
    def fail(argv, **kwargs):
        raise subprocess.CalledProcessError(255, argv)

    monkeypatch.setattr(common.subprocess, "run", fail)
    assert tpu.main(["delete", *BASE]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: gcloud compute tpus tpu-vm")


def test_slurm_writes_and_submits(capsys, recorded, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--nodes", "2", "--gpus-per-node", "8", "--", *TRAIN]
    script, submit = slurm_dry(argv, capsys)
    assert slurm.main(argv) == 0
    assert (tmp_path / "logs" / "slurm" / "bilinear-jax.sbatch").read_text() == script
    assert (tmp_path / "logs" / "slurm").is_dir()  # for SLURM's output file
    assert recorded == [(submit, {"check": True})]
