"""Evaluation: behaviour metrics, hidden-state probes, self-consistency and the report.

Model-independent parts (this package's `metrics`, `probes`, `consistency`, `report`) work on
`predictions.jsonl` rows and numpy arrays; `generate` / `evaluate` run the model and produce them.
Output folder of an evaluation run (formats in docs/evaluation.md):

    predictions.jsonl   one `Prediction` per row
    metrics.json        `compute_metrics` output
    consistency.json    `self_consistency` output
    attention_entropy.json  spatial attention entropy per row and layer, its AUROCs (only when asked for)
    probes/<label>/     probes.json, probe/{probe.safetensors, probe.json}, difference_probe/ (optional)
    report.md           + conditions.png, probe_auroc.png, consistency.png

Names below are imported on first use, so `import rlkit.eval` stays cheap (no sklearn, scipy, matplotlib).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Prediction": "metrics",
    "METRICS_VERSION": "metrics",
    "compute_metrics": "metrics",
    "read_predictions": "metrics",
    "write_metrics": "metrics",
    "self_consistency": "consistency",
    "majority_share": "consistency",
    "LinearProbe": "probes",
    "ProbeResult": "probes",
    "fit_layer_probes": "probes",
    "fit_difference_probes": "probes",
    "text_baseline": "probes",
    "make_folds": "probes",
    "mirage_labels": "probes",
    "correct_labels": "probes",
    "save_probe": "probes",
    "load_probe": "probes",
    "summarize_probes": "probes",
    "save_probe_results": "probes",
    "score_example": "probes",
    "score_examples": "probes",
    "write_report": "report",
}

__all__ = [
    "METRICS_VERSION",
    "LinearProbe",
    "Prediction",
    "ProbeResult",
    "compute_metrics",
    "correct_labels",
    "fit_difference_probes",
    "fit_layer_probes",
    "load_probe",
    "majority_share",
    "make_folds",
    "mirage_labels",
    "read_predictions",
    "save_probe",
    "save_probe_results",
    "score_example",
    "score_examples",
    "self_consistency",
    "summarize_probes",
    "text_baseline",
    "write_metrics",
    "write_report",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
