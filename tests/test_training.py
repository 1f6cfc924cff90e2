"""Training in-process, on 8 fake CPU devices: sharding, resume, restore, failure and bad input."""

import json
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from bilinear_jax.training.plan import ConfigError, plan_run
from bilinear_jax.training.restore import load_run
from bilinear_jax.training.trainer import TrainingDiverged, train
from experiments.configs import lm, modadd, toy_boolean
from tests.training_helpers import copy_run_until, losses, small_digits_config, snapshot, with_overrides


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """40 steps on one device, never interrupted: the run the others are compared with."""
    workdir = tmp_path_factory.mktemp("reference")
    train(small_digits_config(), str(workdir))
    return workdir


def test_reference_run_learns_and_logs_every_step(reference_run):
    metrics = [json.loads(line) for line in (reference_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 41))
    assert metrics[-1]["train/loss"] < 0.5 * metrics[0]["train/loss"]
    assert metrics[-1]["eval/accuracy"] > 0.5
    assert all(m["perf/examples_per_second"] > 0 and 0 < m["perf/mfu"] < 1 for m in metrics)
    assert sorted(int(p.name) for p in (reference_run / "checkpoints").iterdir()) == [10, 20, 30, 40]
    assert list((reference_run / "tensorboard").iterdir())


@pytest.mark.parametrize("mesh", [{"data": 8}, {"data": 2, "fsdp": 2, "tensor": 2}, {"data": 1, "fsdp": 4, "tensor": 2}])
def test_sharded_training_matches_one_device(reference_run, tmp_path, mesh):
    mesh = {"data": 1, "fsdp": 1, "tensor": 1, **mesh, "num_devices": 8}
    config = small_digits_config(mesh=mesh)
    plan = plan_run(config, tmp_path)
    specs = {str(s.spec) for s in jax.tree.leaves(plan.param_shardings)}
    if mesh["fsdp"] > 1 or mesh["tensor"] > 1:  # the parameters really are split
        assert any("fsdp" in s or "tensor" in s for s in specs), specs
    train(config, str(tmp_path))
    sharded, single = losses(tmp_path), losses(reference_run)
    assert sharded.keys() == single.keys()
    np.testing.assert_allclose([sharded[s] for s in single], list(single.values()), rtol=2e-5)


def test_resume_from_a_checkpoint_is_bitwise_identical(reference_run, tmp_path):
    copy_run_until(reference_run, tmp_path, step=20)
    train(small_digits_config(), str(tmp_path))
    resumed, uninterrupted = losses(tmp_path), losses(reference_run)
    assert sorted(resumed) == list(range(21, 41))  # it did resume at 20, not start over
    assert all(resumed[s] == uninterrupted[s] for s in resumed)  # bitwise


def test_restore_onto_a_different_mesh(tmp_path):
    eight = tmp_path / "eight"
    train(small_digits_config(mesh={"data": 2, "fsdp": 2, "tensor": 2, "num_devices": 8}), str(eight))
    one = tmp_path / "one"
    copy_run_until(eight, one, step=20)
    train(small_digits_config(), str(one))  # resumes on 1 device
    resumed, uninterrupted = losses(one), losses(eight)
    assert sorted(resumed) == list(range(21, 41))
    np.testing.assert_allclose([resumed[s] for s in resumed], [uninterrupted[s] for s in resumed], rtol=2e-5)
    run = load_run(eight)  # and analysis reads it on whatever devices it has
    assert run.step == 40 and run.model.blocks[0].tensor().shape == (16, 16, 16)


def test_truncated_latest_checkpoint_falls_back_to_the_previous(reference_run, tmp_path, caplog):
    workdir = tmp_path / "run"
    copy_run_until(reference_run, workdir, step=30)
    shutil.copytree(reference_run / "checkpoints" / "40", workdir / "checkpoints" / "40")
    for path in (workdir / "checkpoints" / "40" / "state").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])  # truncated writes
    config = small_digits_config(num_steps=40)
    with caplog.at_level("WARNING"):
        train(config, str(workdir))
    assert any("falling back" in r.getMessage() for r in caplog.records)
    resumed, uninterrupted = losses(workdir), losses(reference_run)
    assert sorted(resumed) == list(range(31, 41))
    assert all(resumed[s] == uninterrupted[s] for s in resumed)
    # The unreadable step was replaced by a good one: the next reader restores step 40.
    assert load_run(workdir).step == 40


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    full = small_digits_config(num_steps=10, **{"model.input_noise_std": 0.0})
    train(full, str(tmp_path / "full"))
    accumulated = small_digits_config(num_steps=10, grad_accum_steps=4, **{"model.input_noise_std": 0.0})
    train(accumulated, str(tmp_path / "accumulated"))
    a, b = losses(tmp_path / "full"), losses(tmp_path / "accumulated")
    np.testing.assert_allclose(list(b.values()), list(a.values()), rtol=1e-5)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    # Warm up from 0 towards an absurd rate: a few finite steps, then the loss overflows.
    config = small_digits_config(num_steps=40, checkpoint_every=1, **{
        "optim.learning_rate": 1e30, "optim.clip_norm": 0.0, "optim.warmup_steps": 10})
    with pytest.raises(TrainingDiverged, match=r"train/loss.* at step (\d+)") as raised:
        train(config, str(tmp_path))
    bad_step = int(re.search(r"at step (\d+)", str(raised.value)).group(1))
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir())
    assert saved and max(saved) < bad_step
    run = load_run(tmp_path)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(run.params))


def test_bfloat16_compute_trains(tmp_path):
    train(small_digits_config(num_steps=20, compute_dtype="bfloat16"), str(tmp_path))
    trained = losses(tmp_path)
    assert trained[20] < trained[1]
    assert load_run(tmp_path).model.blocks[0].up[...].dtype == np.float32


@pytest.mark.parametrize("config_module, overrides", [
    (toy_boolean, {"num_steps": 60}),
    (modadd, {"num_steps": 30, "data.options.p": 11, "model.d_model": 32, "model.d_hidden": 64, "batch_size": 32}),
    (lm, {"num_steps": 20, "data.options.seq_len": 16, "data.options.max_bytes": 20000, "model.d_model": 32,
          "model.matched_hidden": 48, "batch_size": 16, "eval_batch_size": 64}),
])
def test_every_task_trains(tmp_path, config_module, overrides):
    config = config_module.get_config()
    config.progress, config.log_every, config.mesh.num_devices = False, 5, 1
    config.eval_every = config.checkpoint_every = overrides["num_steps"]
    with_overrides(config, overrides)
    final = train(config, str(tmp_path))
    trained = losses(tmp_path)
    assert trained[max(trained)] < trained[min(trained)]
    assert 0.0 <= final["eval/accuracy"] <= 1.0


def test_lm_variants_have_equal_parameter_counts(tmp_path):
    counts = {}
    for kind in ("bilinear", "relu", "gelu", "swiglu", "reglu", "geglu"):
        config = lm.get_config()
        config.mlp = kind
        config.data.options.max_bytes = 20000
        plan = plan_run(config, tmp_path / kind)
        counts[kind] = sum(np.prod(s) for s in plan.meta["param_shapes"].values())
        assert plan.model_kwargs["mlp"] == kind
    assert max(counts.values()) - min(counts.values()) <= 0.01 * max(counts.values()), counts


@pytest.mark.parametrize("overrides, message", [
    ({"mesh": {"data": 3, "fsdp": 1, "tensor": 1, "num_devices": -1}}, r"needs 3 devices but 8 are available"),
    ({"batch_size": 60, "mesh": {"data": 8, "fsdp": 1, "tensor": 1, "num_devices": 8}}, r"batch_size=60 is not divisible by the data-parallel size 8"),
    ({"data.name": "no_such_dataset"}, r"Unknown dataset 'no_such_dataset'"),
    ({"model.no_such_argument": 1}, r"Unknown argument 'no_such_argument'"),
    ({"optim.schedule": "exponential"}, r"Unknown optim.schedule"),
    ({"eval_batch_size": -8}, r"eval_batch_size=-8 must be a positive multiple"),
    ({"keep_checkpoints": 0}, r"keep_checkpoints must be >= 1"),
    ({"data.prefetch": -1}, r"prefetch must be >= 0"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, overrides, message):
    config = small_digits_config(**overrides)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        train(config, str(workdir))
    assert not workdir.exists()


def test_a_workdir_of_another_model_is_refused_and_left_untouched(reference_run, tmp_path):
    workdir = tmp_path / "run"
    copy_run_until(reference_run, workdir, step=20)
    before = snapshot(workdir)
    with pytest.raises(ConfigError, match=r"incompatible model: parameter 'blocks/0/.*' has shape"):
        train(small_digits_config(**{"model.d_hidden": 8}), str(workdir))
    assert snapshot(workdir) == before



def test_a_workdir_that_is_a_file_is_refused(tmp_path):
    workdir = tmp_path / "afile"
    workdir.write_text("not a run")
    with pytest.raises(ConfigError, match="is a file"):
        train(small_digits_config(), str(workdir))
    assert workdir.read_text() == "not a run"


def test_a_changed_optimizer_structure_is_refused_not_restarted(reference_run, tmp_path):
    """Turning clipping off changes the optimizer state's tree: resuming would fail, so refuse it."""
    workdir = tmp_path / "run"
    copy_run_until(reference_run, workdir, step=20)
    before = snapshot(workdir)
    with pytest.raises(ConfigError, match="optimizer state has another structure"):
        train(small_digits_config(**{"optim.clip_norm": 0.0}), str(workdir))
    assert snapshot(workdir) == before


def test_evaluation_runs_on_its_own_schedule(tmp_path):
    train(small_digits_config(num_steps=20, log_every=10, eval_every=5), str(tmp_path))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "eval/accuracy" in m] == [5, 10, 15, 20]


def test_the_batch_must_span_the_processes(monkeypatch, tmp_path):
    """With 2 processes and data × fsdp = 1, both would feed copies of one shard: refused."""
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    config = small_digits_config(mesh={"data": 1, "fsdp": 1, "tensor": 8, "num_devices": 8})
    with pytest.raises(ConfigError, match="multiple of 2"):
        plan_run(config, tmp_path)


def test_load_run_on_more_devices_than_the_run_used(tmp_path):
    train(small_digits_config(num_steps=10, batch_size=100), str(tmp_path))  # trained on 1 device
    run = load_run(tmp_path)  # this process has 8
    assert run.step == 10 and run.config.batch_size == 100
