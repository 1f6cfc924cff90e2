"""The reproduction pipeline end to end at tiny sizes: results JSON, then the README section."""

import json

from experiments import readme_results, reproduce
from experiments.reproduction import mlp_variants


def test_mlp_variants_quick_writes_results_and_the_readme_table(tmp_path):
    numbers = mlp_variants.run(tmp_path, tmp_path / "work", quick=True, kinds=("relu", "bilinear"))
    assert set(numbers["eval_loss"]) == {"relu", "bilinear"}
    # Equal parameters by construction (gated kinds get 2/3 of the width), within one hidden unit.
    assert abs(numbers["parameters"]["relu"] - numbers["parameters"]["bilinear"]) <= 0.01 * numbers["parameters"]["relu"]
    for kind, loss in numbers["eval_loss"].items():
        assert 0 < loss["mean"] < 6.0, (kind, loss)  # below log(256): it learned something
    assert numbers["rank"][min(numbers["eval_loss"], key=lambda k: numbers["eval_loss"][k]["mean"])] == 1

    result = {"experiment": "mlp_variants", "quick": False, "results": numbers,
              "meta": {"command": "python -m experiments.reproduce mlp_variants", "git_commit": "abc",
                       "device": "cpu", "wall_seconds": 1.0}}
    (tmp_path / "mlp_variants.json").write_text(json.dumps(result))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_results.BEGIN}\nold\n{readme_results.END}\noutro\n")
    assert readme_results.main(["--results-dir", str(tmp_path), "--readme", str(readme), "--check"]) == 1
    readme_results.main(["--results-dir", str(tmp_path), "--readme", str(readme)])
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro") and text.rstrip().endswith("outro")
    assert f"{numbers['eval_loss']['bilinear']['mean']:.4f}" in text  # the number comes from the JSON
    assert readme_results.main(["--results-dir", str(tmp_path), "--readme", str(readme), "--check"]) == 0


def test_unknown_experiment_is_refused(tmp_path):
    try:
        reproduce.reproduce("nope", results_dir=tmp_path, workdir_root=tmp_path, quick=True, command="x")
    except ValueError as error:
        assert "Unknown experiment 'nope'" in str(error)
    else:
        raise AssertionError("no error")


def test_the_readme_results_section_is_generated_from_the_results_files():
    assert readme_results.main(["--check"]) == 0, "run: python -m experiments.readme_results"
