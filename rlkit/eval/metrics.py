"""Behaviour metrics of an evaluation run, with cluster-bootstrap confidence intervals.

Input is one `Prediction` per evaluated row (what `predictions.jsonl` holds); output is the JSON-able dict
written to `metrics.json`. Every definition is spelled out in `docs/evaluation.md`.

```python
from rlkit.eval.metrics import compute_metrics, read_predictions, write_metrics

metrics = compute_metrics(read_predictions("out/predictions.jsonl"), n_boot=1000, seed=0)
write_metrics("out/metrics.json", metrics)
```

Confidence intervals resample *sources*, not rows: a normal pair and all its corrupted / mismatched variants
share a `source_id` and move together, because their outcomes are correlated (same question, same prior).
Resampling rows would treat them as independent and give intervals that are too narrow.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np

# Bump whenever the meaning of a number in metrics.json changes, so runs scored differently never get compared.
METRICS_VERSION = 1

CONDITIONS = ("normal", "corrupted", "mismatched", "text_interference")
BLANK_CORRUPTION = "blank"

# Ratio metrics computed for every group (overall, each condition, each corruption), in report order.
RATE_METRICS = (
    "accuracy_answerable",
    "abstention_unanswerable",
    "mirage_rate",
    "mirage_prior_match",
    "over_abstention",
    "hallucination_rate",
    "truthfulness",
)

REQUIRED_KEYS = ("source_id", "condition", "answerable", "abstained", "correct")


class Prediction(TypedDict):
    """One scored row of `predictions.jsonl` (one sample x condition)."""

    idx: int
    source_id: str
    condition: Literal["normal", "corrupted", "mismatched", "text_interference"]
    corruption: str  # "" for normal rows; "blank" is the blank-image corruption
    severity: float
    task: str
    question: str
    answer: str  # ground truth of the normal pair
    answerable: bool  # does the image (still) carry the evidence for `answer`?
    target: Literal["answer", "abstain"]
    completion: str
    parsed: str
    abstained: bool
    correct: bool  # parsed matches `answer`; False when abstained


class MetricValue(TypedDict):
    """A point estimate with its bootstrap interval; all three are None when `n` is 0."""

    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int


def _validate(preds: Sequence[Prediction]) -> None:
    if len(preds) == 0:
        raise ValueError("compute_metrics got no predictions; check that generation wrote predictions.jsonl.")
    for i, row in enumerate(preds):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise ValueError(f"prediction row {i} (idx={row.get('idx')}) lacks keys {missing}; "
                             f"every row needs {list(REQUIRED_KEYS)}.")
        if row["condition"] not in CONDITIONS:
            raise ValueError(f"prediction row {i} (idx={row.get('idx')}): condition {row['condition']!r} "
                             f"is not one of {list(CONDITIONS)}.")


def _row_terms(preds: Sequence[Prediction]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-row (numerator, denominator) of every rate metric, so a group's metric is sum(num) / sum(den)."""
    answerable = np.array([bool(p["answerable"]) for p in preds])
    abstained = np.array([bool(p["abstained"]) for p in preds])
    # An abstention is never correct, whatever an upstream scorer wrote.
    correct = np.array([bool(p["correct"]) for p in preds]) & ~abstained
    answered = ~abstained
    unanswerable = ~answerable
    mirage = unanswerable & answered
    grounded_correct = answerable & correct
    # Hallucination: an answer given without evidence (any mirage, even one matching the prior) or a wrong
    # answer to an answerable question. Abstentions are neither rewarded nor penalised (TruthRL, w2 = 0).
    hallucinated = answered & (unanswerable | ~correct)
    ones = np.ones(len(preds), dtype=bool)
    terms = {
        "accuracy_answerable": (correct, answerable),
        "abstention_unanswerable": (abstained, unanswerable),
        "mirage_rate": (answered, unanswerable),
        "mirage_prior_match": (correct, mirage),
        "over_abstention": (abstained, answerable),
        "hallucination_rate": (hallucinated, ones),
        "truthfulness": (grounded_correct.astype(float) - hallucinated.astype(float), ones),
    }
    # A row outside a metric's denominator must not reach its numerator (e.g. a correct guess on a blank
    # image is not an answerable-row success).
    return {name: (num * den, den.astype(float)) for name, (num, den) in terms.items()}


def _paired_drop(preds: Sequence[Prediction], source_index: np.ndarray, n_sources: int,
                 corruption: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-source (accuracy on normal rows - accuracy on `corruption` rows), for sources having both.

    Returns per-source numerator (the difference, 0 where unpaired) and denominator (1 where paired), so the
    paired mean is a ratio like the other metrics and bootstraps the same way.
    """
    sums = np.zeros((2, n_sources))
    counts = np.zeros((2, n_sources))
    for p, s in zip(preds, source_index, strict=True):
        if p["condition"] == "normal":
            side = 0
        elif p["condition"] == "corrupted" and p.get("corruption", "") == corruption:
            side = 1
        else:
            continue
        sums[side, s] += float(bool(p["correct"]) and not bool(p["abstained"]))
        counts[side, s] += 1
    paired = (counts[0] > 0) & (counts[1] > 0)
    # Several rows per side (e.g. repeated severities) are averaged first, so each source weighs the same.
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(paired, sums[0] / np.maximum(counts[0], 1) - sums[1] / np.maximum(counts[1], 1), 0.0)
    return diff, paired.astype(float)


def _bootstrap_ratios(num: np.ndarray, den: np.ndarray, n_boot: int, seed: int,
                      level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CIs of sum(num) / sum(den) under resampling of sources (rows of `num`, `den`: [S, M]).

    A resample is a vector of multinomial counts over the S sources, so each bootstrap statistic is one
    matrix product instead of a Python loop over rows.
    """
    n_sources, n_metrics = num.shape
    rng = np.random.default_rng(seed)
    stats = np.empty((n_boot, n_metrics))
    chunk = max(1, min(n_boot, 2_000_000 // max(n_sources, 1)))  # bounds memory at ~16 MB of counts
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        weights = rng.multinomial(n_sources, np.full(n_sources, 1.0 / n_sources), size=size).astype(float)
        b_num, b_den = weights @ num, weights @ den
        # A resample may draw no row of a small group: that draw says nothing about the metric, so it is NaN
        # and dropped from the percentiles rather than counted as 0.
        stats[start:start + size] = np.divide(b_num, b_den, out=np.full_like(b_num, np.nan), where=b_den > 0)
    alpha = (1.0 - level) / 2.0
    low = np.full(n_metrics, np.nan)
    high = np.full(n_metrics, np.nan)
    valid = ~np.isnan(stats).all(axis=0)
    if valid.any():
        low[valid] = np.nanpercentile(stats[:, valid], 100 * alpha, axis=0)
        high[valid] = np.nanpercentile(stats[:, valid], 100 * (1 - alpha), axis=0)
    return low, high


def _metric_value(num: float, den: float, low: float, high: float) -> MetricValue:
    if den == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    return {
        "value": float(num / den),
        "ci_low": None if np.isnan(low) else float(low),
        "ci_high": None if np.isnan(high) else float(high),
        "n": round(float(den)),
    }


def compute_metrics(preds: Sequence[Prediction], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                    blank_corruption: str = BLANK_CORRUPTION) -> dict:
    """Score predictions per condition, per corruption and overall, with cluster-bootstrap CIs.

    Args:
        preds: one `Prediction` per evaluated row.
        n_boot: bootstrap resamples; 0 skips the CIs (they are then None).
        seed: seed of the resampling; the same seed gives the same intervals.
        level: coverage of the percentile intervals.
        blank_corruption: the `corruption` name of blank-image rows, used by `image_reliance_gap`.

    Returns:
        A strict-JSON-able dict: `metrics_version`, `ci` (how intervals were made), `n_rows`, `n_sources`,
        `overall`, `by_condition` and `by_corruption` (rows of condition `corrupted`, keyed by corruption
        name), each mapping metric name to `{"value", "ci_low", "ci_high", "n"}`. `overall` also holds
        `image_reliance_gap`; each corruption also holds `paired_accuracy_drop` (the same gap, against
        that corruption). A metric whose denominator is empty has `value: None`.

    Raises:
        ValueError: no predictions, a row lacking a required key, or an unknown condition.

    Example:
        >>> rows = [dict(source_id="s0", condition="normal", corruption="", answerable=True,
        ...              abstained=False, correct=True, parsed="red"),
        ...         dict(source_id="s0", condition="corrupted", corruption="blank", answerable=False,
        ...              abstained=True, correct=False, parsed="")]
        >>> m = compute_metrics(rows, n_boot=0)
        >>> m["overall"]["accuracy_answerable"]["value"], m["overall"]["abstention_unanswerable"]["value"]
        (1.0, 1.0)
        >>> m["overall"]["image_reliance_gap"]["value"]
        1.0
    """
    _validate(preds)
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}.")

    sources = sorted({str(p["source_id"]) for p in preds})
    position = {s: i for i, s in enumerate(sources)}
    source_index = np.array([position[str(p["source_id"])] for p in preds])
    n_sources = len(sources)

    conditions = np.array([p["condition"] for p in preds])
    corruptions = np.array([str(p.get("corruption", "")) for p in preds])
    groups: dict[tuple[str, str], np.ndarray] = {("overall", ""): np.ones(len(preds), dtype=bool)}
    for cond in CONDITIONS:
        if (conditions == cond).any():
            groups[("by_condition", cond)] = conditions == cond
    for corr in sorted(set(corruptions[conditions == "corrupted"])):
        groups[("by_corruption", corr)] = (conditions == "corrupted") & (corruptions == corr)

    # Stack every (group, metric) as a column of per-source sums: one bootstrap serves all of them.
    terms = _row_terms(preds)
    columns: list[tuple[tuple[str, str], str]] = []
    num_cols, den_cols = [], []
    for key, mask in groups.items():
        for name in RATE_METRICS:
            row_num, row_den = terms[name]
            num_cols.append(np.bincount(source_index, weights=np.where(mask, row_num, 0.0), minlength=n_sources))
            den_cols.append(np.bincount(source_index, weights=np.where(mask, row_den, 0.0), minlength=n_sources))
            columns.append((key, name))
    gap_corruptions = [("overall", "", "image_reliance_gap", blank_corruption)]
    gap_corruptions += [("by_corruption", key[1], "paired_accuracy_drop", key[1])
                        for key in groups if key[0] == "by_corruption"]
    for section, name, metric, corruption in gap_corruptions:
        diff, paired = _paired_drop(preds, source_index, n_sources, corruption)
        num_cols.append(diff)
        den_cols.append(paired)
        columns.append(((section, name), metric))
    num, den = np.stack(num_cols, axis=1), np.stack(den_cols, axis=1)

    if n_boot > 0:
        low, high = _bootstrap_ratios(num, den, n_boot, seed, level)
    else:
        low = high = np.full(num.shape[1], np.nan)

    out: dict = {
        "metrics_version": METRICS_VERSION,
        "ci": {"level": level, "method": "percentile, cluster bootstrap over source_id", "n_boot": n_boot,
               "seed": seed},
        "n_rows": len(preds),
        "n_sources": n_sources,
        "overall": {},
        "by_condition": {},
        "by_corruption": {},
    }
    totals_num, totals_den = num.sum(axis=0), den.sum(axis=0)
    for j, ((section, name), metric) in enumerate(columns):
        target = out[section] if section == "overall" else out[section].setdefault(name, {})
        target[metric] = _metric_value(totals_num[j], totals_den[j], low[j], high[j])
    return out


def write_metrics(path: str | Path, metrics: dict) -> Path:
    """Write `metrics` as strict JSON (a NaN or infinity raises instead of writing invalid JSON).

    Args:
        path: destination file, usually `<out_dir>/metrics.json`.
        metrics: the output of `compute_metrics`.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    return path


def read_predictions(path: str | Path) -> list[Prediction]:
    """Read `predictions.jsonl` (one JSON object per line; blank lines ignored).

    Raises:
        ValueError: a line is not valid JSON; the message names the file and line number.
    """
    rows: list[Prediction] = []
    with open(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg}).") from err
    return rows

