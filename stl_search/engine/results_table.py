"""Human-readable tables of evaluation results (the numbers come from the evaluator's dict)."""

from __future__ import annotations

from typing import Any, Mapping


def _flatten(results: Mapping[str, Any], prefix: str = "") -> dict:
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def format_results_table(results: Mapping[str, Any]) -> str:
    """One line per metric, ``task/metric  value``, in the evaluator's order (values as given)."""
    flat = _flatten(results)
    if not flat:
        return "(no results)"
    width = max(len(k) for k in flat)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -------"]
    for key, value in flat.items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)
