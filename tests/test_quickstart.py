"""The README's main job, as a user runs it: a relative workdir, train, then analyse."""

from experiments import quickstart


def test_quickstart_trains_and_analyses_in_a_relative_workdir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert quickstart.main(["--workdir", "workdirs/quickstart", "--steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "max relative error" in out
    error = float(out.split("max relative error")[1].split()[0])
    assert error < 1e-4
    assert (tmp_path / "workdirs" / "quickstart" / "checkpoints" / "40").is_dir()
    assert (tmp_path / "workdirs" / "quickstart" / "analysis" / "report.html").is_file()
    # Rerunning finds the finished run, trains nothing, and reports the same accuracy.
    accuracy = out.split("test accuracy")[1].split()[0]
    assert quickstart.main(["--workdir", "workdirs/quickstart", "--steps", "40"]) == 0
    assert f"test accuracy {accuracy}" in capsys.readouterr().out
