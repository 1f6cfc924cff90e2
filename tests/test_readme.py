"""The README's library example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_library_example_runs(capsys):
    block = next(b for b in python_blocks() if "from bilinear_jax.layers import" in b)
    exec(compile(block, "README.md", "exec"), {})
    assert "not a quadratic form" in capsys.readouterr().out
