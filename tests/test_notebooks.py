"""The Colab notebooks in notebooks/: stored clean, and each runs top to bottom on tiny settings.

Each notebook reads ``BILINEAR_NOTEBOOK_SMOKE`` and then trains for a few dozen steps in a temporary
directory; executed with nbclient in a kernel of this interpreter, offline, in well under a minute.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_quickstart.ipynb", "02_transformer_circuits.ipynb", "03_analysis_api_tour.ipynb"]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def test_all_notebooks_present():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_clean(path):
    """Stored with outputs cleared, a python3 kernelspec, and the Colab install cell first."""
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "no code cells"
    for cell in code:
        assert cell.outputs == [], f"stored outputs in: {cell.source[:60]!r}"
        assert cell.execution_count is None
    install = code[0].source
    assert 'find_spec("bilinear_jax")' in install and '"pip"' in install, install
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# bilinear-jax")
    assert any('os.environ.get("BILINEAR_NOTEBOOK_SMOKE")' in cell.source for cell in code[1:3]), \
        "a settings cell near the top should read BILINEAR_NOTEBOOK_SMOKE"


@pytest.fixture(scope="session")
def kernel_dir(tmp_path_factory) -> Path:
    """A ``python3`` kernelspec that runs this interpreter, first on JUPYTER_PATH.

    ipykernel installs one under ``sys.prefix/share/jupyter/kernels`` (and jupyter_client would fall
    back to its built-in spec), but a user-level ``python3`` spec pointing at another Python would
    take precedence over it; this one cannot be shadowed.
    """
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (bilinear-jax tests)",
        "language": "python",
    }))
    return root


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, kernel_dir, tmp_path, monkeypatch):
    # The kernel inherits this environment.
    monkeypatch.setenv("BILINEAR_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("BILINEAR_JAX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' tempfile.mkdtemp() workdirs
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(kernel_dir), os.environ.get("JUPYTER_PATH", "")]))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # one CPU device, as in Colab (conftest fakes 8)

    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable

    nb = _read(path)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert any(out.output_type == "stream" for out in outputs)
    # Figures render inline (a library module selecting the Agg backend on import would drop them).
    assert any("image/png" in out.get("data", {}) for out in outputs), "no inline figures"
