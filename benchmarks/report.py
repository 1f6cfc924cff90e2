"""Plain-text tables, the run's environment record, and the JSON file of results."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform as platform_lib
from pathlib import Path
from typing import Any, Sequence

import jax

__all__ = ["environment", "format_table", "format_value", "output_path", "write_json"]


def format_value(value: Any) -> str:
    """A compact, readable cell: 3–4 significant digits for floats, ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if magnitude >= 1e5 or magnitude < 1e-3:
            return f"{value:.3g}"
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def format_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An aligned plain-text table of ``rows`` (dicts), one column per key."""
    if not rows:
        return f"{title}\n  (no rows)\n"
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))
    cells = [[format_value(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    left = [all(isinstance(row.get(col), str) for row in rows if row.get(col) is not None) for col in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if is_left else v.rjust(w) for v, w, is_left in zip(values, widths, left))

    rule = "-" * len(line(columns))
    body = "\n".join(line(r) for r in cells)
    return f"{title}\n{rule}\n{line(columns)}\n{rule}\n{body}\n{rule}\n"


def environment() -> dict[str, Any]:
    """Where and when the numbers were taken: platform, device kind, versions, timestamp."""
    device = jax.devices()[0]
    import flax

    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
        "python_version": platform_lib.python_version(),
        "host": platform_lib.node(),
        "cpu_count": os.cpu_count(),
    }


def output_path(out: str | os.PathLike, platform: str) -> Path:
    """``results/benchmarks.json`` → ``results/benchmarks-cpu.json``: one file per platform."""
    path = Path(out)
    return path.with_name(f"{path.stem}-{platform}{path.suffix or '.json'}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON, creating the parent directory; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    return path
