"""Self-consistency as a predictor of correctness.

For each item the model is sampled K times; the *majority share* is the fraction of the K parsed answers
that equal the most frequent one (1.0 = all samples agree). Seed 003 reports it as the strongest single
predictor of correctness across VLM families (point-biserial R = 0.429), far ahead of attention maps.
This module measures the same thing on our runs: point-biserial R between majority share and correctness of
the greedy answer, and the AUROC of majority share as a correctness score.

```python
from rlkit.eval.consistency import self_consistency

result = self_consistency(samples=[["red", "red", "blue"], ["3", "4", "5"]], correct=[True, False])
result["point_biserial_r"]["value"], result["auroc"]["value"]
```
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np


def _default_normalize(answer: str) -> str:
    # Parsed answers are already normalised by rlkit.rewards; this only guards against case/space drift.
    return " ".join(str(answer).split()).casefold()


def majority_share(samples: Sequence[str], normalize: Callable[[str], str] = _default_normalize) -> float:
    """Fraction of `samples` equal to the most frequent answer.

    Abstentions are answers like any other here ("I can't tell" said K times is consistent); filter them
    first if that is not what you want.

    Raises:
        ValueError: `samples` is empty.

    Example:
        >>> majority_share(["Red", "red ", "blue", "red"])
        0.75
    """
    if len(samples) == 0:
        raise ValueError("majority_share needs at least one sampled answer, got none.")
    counts = Counter(normalize(s) for s in samples)
    return counts.most_common(1)[0][1] / len(samples)


def _null(reason: str) -> dict:
    return {"value": None, "p_value": None, "reason": reason}


def self_consistency(samples: Sequence[Sequence[str]], correct: Sequence[bool],
                     normalize: Callable[[str], str] = _default_normalize) -> dict:
    """Majority share per item and how well it predicts correctness of the greedy answer.

    Args:
        samples: per item, the K sampled parsed answers (K may vary between items, but must be >= 1).
        correct: per item, whether the greedy answer was correct.
        normalize: maps a parsed answer to the key used to count agreement.

    Returns:
        A strict-JSON-able dict: `n_items`, `k_min`, `k_max`, `majority_share` (list per item), `correct`
        (list per item), `mean_share_correct` / `mean_share_incorrect` (None when that class is empty),
        `point_biserial_r` (`value`, `p_value`, `reason`) and `auroc` (`value`, `reason`). A statistic that is
        undefined on these inputs (one correctness class, constant share, as with K = 1) has `value: None`
        and a `reason`; `reason` is None otherwise.

    Raises:
        ValueError: `samples` and `correct` differ in length, there are no items, or an item has no samples.

    Example:
        >>> r = self_consistency([["a", "a"], ["a", "b"], ["c", "c"], ["x", "y"]], [True, False, True, False])
        >>> r["majority_share"], r["auroc"]["value"]
        ([1.0, 0.5, 1.0, 0.5], 1.0)
    """
    if len(samples) != len(correct):
        raise ValueError(f"samples has {len(samples)} items but correct has {len(correct)}; pass one "
                         "correctness flag per item.")
    if len(samples) == 0:
        raise ValueError("self_consistency got no items.")
    for i, item in enumerate(samples):
        if isinstance(item, str) or len(item) == 0:
            raise ValueError(f"item {i}: expected a list of K >= 1 sampled answers, got {item!r}.")

    shares = np.array([majority_share(item, normalize) for item in samples], dtype=float)
    y = np.array([bool(c) for c in correct])
    k = [len(item) for item in samples]
    out: dict = {
        "n_items": len(samples),
        "k_min": min(k),
        "k_max": max(k),
        "majority_share": shares.tolist(),
        "correct": y.tolist(),
        "mean_share_correct": float(shares[y].mean()) if y.any() else None,
        "mean_share_incorrect": float(shares[~y].mean()) if (~y).any() else None,
    }

    if y.all() or not y.any():
        reason = f"correctness has one class ({'all correct' if y.all() else 'none correct'}); need both"
    elif np.ptp(shares) == 0:
        reason = ("majority share is constant across items"
                  + (" (K = 1: one sample per item cannot disagree)" if max(k) == 1 else ""))
    else:
        reason = None
    if reason is not None:
        out["point_biserial_r"] = _null(reason)
        out["auroc"] = {"value": None, "reason": reason}
        return out

    from scipy.stats import pointbiserialr
    from sklearn.metrics import roc_auc_score

    r, p = pointbiserialr(y.astype(float), shares)
    out["point_biserial_r"] = {"value": float(r), "p_value": float(p), "reason": None}
    out["auroc"] = {"value": float(roc_auc_score(y, shares)), "reason": None}
    return out
