"""Linear probes on hidden states: is the model running on imagined content?

Seed 000 reports that mirage behaviour is linearly decodable from a VLM's activations even with the image
present, and that a text-only baseline cannot recover it. This module fits and scores those probes; hidden
states come from `rlkit.eval.generate` (model-bound), everything here is plain numpy / scikit-learn.

```python
from rlkit.eval.probes import (fit_layer_probes, mirage_labels, save_probe_results, text_baseline,
                               within_group_auroc)

labels = mirage_labels(preds)                    # 1 mirage, 0 not, -1 undetermined
keep = labels >= 0
y, g = labels[keep], groups[keep]
result = fit_layer_probes(features[keep], y, g)  # features: [n, L, d]
text_auroc, text_scores = text_baseline(questions[keep], y, g, fold_ids=result.fold_ids, return_scores=True)
probe_within, pairs = within_group_auroc(result.best_scores, y, g)   # pairs that share a source_id
within = {"probe": probe_within, "text": within_group_auroc(text_scores, y, g)[0], "pairs": pairs}
save_probe_results("out/probes/mirage", result, text_auroc=text_auroc, within_question=within)
```

A saved probe scores a new (image, question) with the model it was fitted on:

```python
probe = load_probe("runs/eval-sft/probes/mirage/probe")
p_mirage = score_example(model, processor, image, "What colour is the circle?", probe)
```

Cross-validation groups rows by `source_id`: a normal pair and its corruptions never sit on both sides of a
split, otherwise a probe can score well by recognising the question instead of decoding the behaviour.
Probes are stored as `probe.safetensors` + `probe.json`, never pickle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from rlkit.eval.metrics import BLANK_CORRUPTION, Prediction

# Bump when the files written by save_probe change meaning or layout.
PROBE_FORMAT_VERSION = 1
POOLINGS = ("last_token", "image_mean")
FEATURES = ("hidden", "difference")
_TENSORS = ("scaler_mean", "scaler_scale", "coef", "intercept")


@dataclass
class LinearProbe:
    """A fitted StandardScaler + logistic-regression probe, as plain arrays (loadable without sklearn)."""

    mean: np.ndarray  # [d] scaler mean
    scale: np.ndarray  # [d] scaler scale (1.0 for constant features, as sklearn does)
    coef: np.ndarray  # [d]
    intercept: float
    layer: int
    pooling: str = "last_token"
    feature: str = "hidden"  # "difference": trained on h(image) - h(blank image)
    label_name: str = "mirage"
    auroc: float | None = None  # out-of-fold AUROC at `layer`
    n: int = 0  # rows it was fitted on
    model_id: str | None = None  # filled by the caller that knows the model
    model_hash: str | None = None

    def score(self, features: np.ndarray) -> np.ndarray:
        """Probability of the positive label for each row of `features` ([n, d] or [d]).

        Raises:
            ValueError: the feature width differs from the probe's.
        """
        from scipy.special import expit

        x = np.asarray(features, dtype=np.float64)
        x = x[None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[1] != self.coef.shape[0]:
            raise ValueError(f"probe (layer {self.layer}) expects features of shape [n, {self.coef.shape[0]}], "
                             f"got {tuple(np.shape(features))}.")
        logits = ((x - self.mean) / self.scale) @ self.coef.astype(np.float64) + float(self.intercept)
        return expit(logits)


@dataclass
class ProbeResult:
    """Cross-validated probes for every layer, plus the probe refitted on all rows at the best layer."""

    layers: list[int]
    auroc: list[float]  # pooled out-of-fold AUROC per layer
    fold_auroc: list[list[float | None]]  # per layer, per fold (None where a test fold holds one class)
    best_layer: int
    best_auroc: float
    probe: LinearProbe
    fold_ids: np.ndarray  # [n] test fold of each row: pass it to text_baseline for the same folds
    oof_scores: np.ndarray  # [n, L] out-of-fold probabilities
    n: int
    n_groups: int
    n_positive: int
    n_splits: int
    seed: int
    C: float
    label_name: str = "mirage"
    feature: str = "hidden"

    def to_dict(self) -> dict:
        """JSON-able summary (no per-row arrays)."""
        keep = ("layers", "auroc", "fold_auroc", "best_layer", "best_auroc", "n", "n_groups", "n_positive",
                "n_splits", "seed", "C", "label_name", "feature")
        return {k: getattr(self, k) for k in keep} | {"pooling": self.probe.pooling}

    @property
    def best_scores(self) -> np.ndarray:
        """`[n]` out-of-fold probabilities at the best layer."""
        return self.oof_scores[:, self.layers.index(self.best_layer)]


def _check_labels(labels: np.ndarray, groups: np.ndarray, n: int, n_splits: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    g = np.asarray(groups)
    if y.shape != (n,) or g.shape != (n,):
        raise ValueError(f"labels and groups must have shape ({n},) to match the features; "
                         f"got {y.shape} and {g.shape}.")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"labels must be 0/1, got values {sorted(values)}; mirage_labels marks undetermined "
                         "rows -1: drop them first (keep = labels >= 0).")
    y = y.astype(int)
    if len(values) < 2:
        raise ValueError(f"labels have one class only (all {y[0]}); a probe needs positive and negative rows.")
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}.")
    n_groups = len(np.unique(g))
    if n_groups < n_splits:
        raise ValueError(f"{n_groups} groups (source_ids) for {n_splits} folds; need at least n_splits groups. "
                         "Evaluate more sources or lower n_splits.")
    for cls in (0, 1):
        k = len(np.unique(g[y == cls]))
        if k < 2:
            raise ValueError(f"label {cls} occurs in {k} group(s); grouped CV needs each class in >= 2 groups "
                             "(ideally >= n_splits) so every training fold sees both classes.")
    return y, g


def make_folds(labels: np.ndarray, groups: np.ndarray, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Assign each row a test fold with `StratifiedGroupKFold`: all rows of a group share a fold.

    Deterministic in its arguments, so `fit_layer_probes` and `text_baseline` called with the same labels,
    groups, n_splits and seed use the same folds.

    Returns:
        `[n]` int array, the fold in which each row is held out.

    Raises:
        ValueError: labels are not binary, have one class, or there are too few groups for the folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y, g = _check_labels(labels, groups, len(np.asarray(labels)), n_splits)
    fold_ids = np.full(len(y), -1)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, g)):
        fold_ids[test] = k
    return fold_ids


def _check_folds(y: np.ndarray, fold_ids: np.ndarray) -> int:
    fold_ids = np.asarray(fold_ids)
    if fold_ids.shape != y.shape or (fold_ids < 0).any():
        raise ValueError(f"fold_ids must be a non-negative int array of shape {y.shape}, got {fold_ids.shape}.")
    folds = np.unique(fold_ids)
    for k in folds:
        if len(np.unique(y[fold_ids != k])) < 2:
            raise ValueError(f"fold {k}: the training rows hold one class only; use more groups per class "
                             "or fewer folds.")
    return len(folds)


def _oof(make_model, x, y: np.ndarray, fold_ids: np.ndarray) -> np.ndarray:
    """Out-of-fold positive-class probabilities; `x` is anything indexable by a row-index array."""
    scores = np.empty(len(y))
    for k in np.unique(fold_ids):
        train, test = fold_ids != k, fold_ids == k
        model = make_model().fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    return scores


def _probe_pipeline(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


def _fold_aurocs(y: np.ndarray, scores: np.ndarray, fold_ids: np.ndarray) -> list[float | None]:
    from sklearn.metrics import roc_auc_score

    out: list[float | None] = []
    for k in np.unique(fold_ids):
        m = fold_ids == k
        out.append(float(roc_auc_score(y[m], scores[m])) if len(np.unique(y[m])) == 2 else None)
    return out


def fit_layer_probes(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_splits: int = 5,
                     seed: int = 0, C: float = 1.0, layer_ids: Sequence[int] | None = None,
                     pooling: str = "last_token", label_name: str = "mirage", feature: str = "hidden",
                     fold_ids: np.ndarray | None = None) -> ProbeResult:
    """Fit a StandardScaler + LogisticRegression probe per layer, scored by grouped out-of-fold AUROC.

    Args:
        features: `[n, L, d]` pooled hidden states (L captured layers).
        labels: `[n]` 0/1 labels (e.g. from `mirage_labels`, undetermined rows dropped).
        groups: `[n]` group of each row, the `source_id`: no group is split across folds.
        n_splits: number of folds.
        seed: fold shuffling and solver seed.
        C: inverse L2 regularisation strength of the logistic regression.
        layer_ids: model layer index of each of the L captured layers (default `0..L-1`).
        pooling: how `features` were pooled over tokens, one of `POOLINGS` (recorded in the probe).
        label_name: what the labels mean (recorded in the probe).
        feature: "hidden" or "difference" (recorded; see `fit_difference_probes`).
        fold_ids: `[n]` precomputed test fold per row (e.g. from `make_folds`); default computes them from
            labels, groups, n_splits and seed. Given folds are used as they are, grouped or not.

    Returns:
        A `ProbeResult`; AUROC is computed on the pooled out-of-fold scores of all rows.

    Raises:
        ValueError: wrong shapes, non-binary or one-class labels, too few groups for the folds, or a
            training fold without both classes.
    """
    from sklearn.metrics import roc_auc_score

    x = np.asarray(features)
    if x.ndim != 3:
        raise ValueError(f"features must have shape [n, L, d], got {x.shape}.")
    if pooling not in POOLINGS or feature not in FEATURES:
        raise ValueError(f"pooling must be one of {POOLINGS} and feature one of {FEATURES}; "
                         f"got {pooling!r}, {feature!r}.")
    n, n_layers, _ = x.shape
    layers = list(range(n_layers)) if layer_ids is None else [int(i) for i in layer_ids]
    if len(layers) != n_layers:
        raise ValueError(f"layer_ids has {len(layers)} entries but features have {n_layers} layers.")
    if fold_ids is not None:
        n_splits = len(np.unique(fold_ids))
    y, g = _check_labels(labels, groups, n, n_splits)
    fold_ids = make_folds(y, g, n_splits, seed) if fold_ids is None else np.asarray(fold_ids)
    n_folds = _check_folds(y, fold_ids)

    oof = np.stack([_oof(lambda: _probe_pipeline(C, seed), x[:, j], y, fold_ids) for j in range(n_layers)], 1)
    auroc = [float(roc_auc_score(y, oof[:, j])) for j in range(n_layers)]
    best = int(np.argmax(auroc))

    # The deployable probe sees every row; its out-of-fold AUROC above is the honest estimate of its skill.
    pipe = _probe_pipeline(C, seed).fit(x[:, best], y)
    scaler, logreg = pipe[0], pipe[-1]
    probe = LinearProbe(mean=scaler.mean_.astype(np.float32), scale=scaler.scale_.astype(np.float32),
                        coef=logreg.coef_[0].astype(np.float32), intercept=float(logreg.intercept_[0]),
                        layer=layers[best], pooling=pooling, feature=feature, label_name=label_name,
                        auroc=auroc[best], n=n)
    return ProbeResult(layers=layers, auroc=auroc,
                       fold_auroc=[_fold_aurocs(y, oof[:, j], fold_ids) for j in range(n_layers)],
                       best_layer=layers[best], best_auroc=auroc[best], probe=probe, fold_ids=fold_ids,
                       oof_scores=oof, n=n, n_groups=len(np.unique(g)), n_positive=int(y.sum()),
                       n_splits=n_folds, seed=seed, C=C, label_name=label_name, feature=feature)


def fit_difference_probes(features_image: np.ndarray, features_blank: np.ndarray, labels: np.ndarray,
                          groups: np.ndarray, **kwargs) -> ProbeResult:
    """Probes on `h(image) - h(blank image)`: what the image adds to the representation of the same question.

    Args:
        features_image: `[n, L, d]` hidden states with the real (or corrupted) image.
        features_blank: `[n, L, d]` hidden states of the same rows with the blank image.
        labels, groups, **kwargs: as in `fit_layer_probes`.

    Raises:
        ValueError: the two arrays differ in shape, or any `fit_layer_probes` error.
    """
    a, b = np.asarray(features_image), np.asarray(features_blank)
    if a.shape != b.shape:
        raise ValueError(f"features_image {a.shape} and features_blank {b.shape} must have the same shape.")
    return fit_layer_probes(a - b, labels, groups, feature="difference", **kwargs)


def text_baseline(texts: Sequence[str], labels: np.ndarray, groups: np.ndarray, fold_ids: np.ndarray | None = None,
                  n_splits: int = 5, seed: int = 0, C: float = 1.0,
                  return_scores: bool = False) -> float | tuple[float, np.ndarray]:
    """Out-of-fold AUROC of a TF-IDF + logistic-regression classifier on the question text alone.

    The probe's claim is that activations carry a signal the text does not; this is the control. Pass the
    probe's `ProbeResult.fold_ids` so both are scored on the same folds (or the same labels, groups,
    n_splits and seed, which give the same folds).

    Returns:
        The AUROC; with `return_scores=True`, `(auroc, scores)` where `scores` are the `[n]` out-of-fold
        probabilities (e.g. for `within_group_auroc`).

    Raises:
        ValueError: as `fit_layer_probes`, or `texts` not matching the labels.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline

    docs = np.array([str(t) for t in texts], dtype=object)
    if not any(d.strip() for d in docs):
        raise ValueError("text_baseline got only empty texts; pass the question of each row.")
    if fold_ids is not None:
        n_splits = len(np.unique(fold_ids))  # the given folds decide, not the default
    y, g = _check_labels(labels, groups, len(docs), n_splits)
    fold_ids = make_folds(y, g, n_splits, seed) if fold_ids is None else np.asarray(fold_ids)
    _check_folds(y, fold_ids)

    def make_model():
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                             # keep 1-char tokens: "3", "a" and "b" matter in VQA questions
                                             token_pattern=r"(?u)\b\w+\b"),
                             LogisticRegression(C=C, max_iter=2000, random_state=seed))

    scores = _oof(make_model, docs, y, fold_ids)
    auroc = float(roc_auc_score(y, scores))
    return (auroc, scores) if return_scores else auroc


def within_group_auroc(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> tuple[float | None, int]:
    """AUROC over the (positive, negative) pairs of rows that share a group; ties count 1/2.

    With `groups` the `source_id`, a pair is e.g. a normal and a blank-image row of the same question: the
    prompt text is the same, so a text-only score cannot rank them, while hidden states can.

    Example (group "a": ranked right; "b": a tie; "c": one class, no pair):
        >>> within_group_auroc([0.9, 0.2, 0.5, 0.5, 0.7], [1, 0, 1, 0, 1], ["a", "a", "b", "b", "c"])
        (0.75, 2)

    Returns:
        `(auroc, pairs)`: the fraction of pairs where the positive scores higher (None when there are no
        pairs) and the number of pairs.

    Raises:
        ValueError: the arrays differ in length or labels are not 0/1.
    """
    s, y, g = np.asarray(scores, dtype=np.float64), np.asarray(labels), np.asarray(groups)
    if not s.shape == y.shape == g.shape or s.ndim != 1:
        raise ValueError(f"scores, labels and groups must be 1-d of the same length; got shapes {s.shape}, "
                         f"{y.shape}, {g.shape}.")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError(f"labels must be 0/1, got values {sorted(set(np.unique(y).tolist()))}; drop "
                         "undetermined rows (-1) first.")
    _, inverse = np.unique(g, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    wins, pairs = 0.0, 0
    for rows in np.split(order, np.cumsum(np.bincount(inverse))[:-1]):
        diff = s[rows][y[rows] == 1][:, None] - s[rows][y[rows] == 0][None, :]  # [positives, negatives]
        wins += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
        pairs += diff.size
    return (wins / pairs if pairs else None), int(pairs)


# ----------------------------------------------------------------------------- scoring new examples


def score_examples(model, processor, images: Sequence, questions: Sequence[str] | None, probe: LinearProbe,
                   instruction: str | None = None, prompts: Sequence | None = None,
                   blank_color: Sequence[int] | None = None, batch_size: int = 32) -> np.ndarray:
    """Probability of the probe's positive label (e.g. mirage) for each (image, question), batched.

    Each question becomes the prompt the data builders write (`instruction` with `{question}` filled in, as a
    one-turn conversation with the image first), the model runs one forward pass (`hidden_features`), and
    the probe reads its `pooling` at its `layer`. A `feature == "difference"` probe also runs each prompt
    with a blank image of the same size and scores `h(image) - h(blank)`.

    Args:
        model, processor: the model the probe was fitted on (or one with the same hidden states).
        images: PIL images or paths.
        questions: one question per image; None when `prompts` are given.
        probe: e.g. `load_probe("<eval out>/probes/mirage/probe")`.
        instruction: prompt template with `{question}`; default: the data config's `instruction`.
        prompts: full prompts instead of questions: conversational (`make_prompt` shape) or the user text.
        blank_color: RGB of the blank image (difference probes); default: the data config's `blank_color`.
        batch_size: rows per forward pass (a difference probe runs 2x this).

    Returns:
        `[n]` float64 probabilities.

    Raises:
        ValueError: lengths differ, or the probe does not fit the model (hidden size, layer out of range).
    """
    from PIL import Image

    from data_builders.config import DataConfig
    from data_builders.prompts import make_prompt
    from rlkit.eval.generate import hidden_features, hidden_shape

    defaults = DataConfig()
    if prompts is None:
        if questions is None:
            raise ValueError("give questions (one per image) or prompts.")
        template = defaults.instruction if instruction is None else instruction
        if "{question}" not in template:
            raise ValueError(f"instruction {template!r} has no {{question}} placeholder.")
        prompts = [template.replace("{question}", str(q)) for q in questions]
    prompts = [make_prompt(p) if isinstance(p, str) else p for p in prompts]
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} questions / prompts; give one per image.")
    n_states, width = hidden_shape(model)
    name = f"{probe.label_name} probe" + (f" of {probe.model_id}" if probe.model_id else "")
    if probe.coef.shape[0] != width:
        raise ValueError(f"{name} reads hidden states of size {probe.coef.shape[0]}, but "
                         f"{type(model).__name__} has hidden size {width}: use the model the probe was fitted on.")
    if not 0 <= probe.layer < n_states:
        raise ValueError(f"{name} reads layer {probe.layer}, but {type(model).__name__} has {n_states} hidden "
                         f"states (layers 0..{n_states - 1}, 0 = embeddings): use the model it was fitted on.")
    if probe.pooling not in POOLINGS or probe.feature not in FEATURES:
        raise ValueError(f"{name}: pooling {probe.pooling!r} / feature {probe.feature!r}; this rlkit knows "
                         f"{POOLINGS} / {FEATURES}.")
    blank = tuple(defaults.blank_color if blank_color is None else blank_color)
    scores = []
    for start in range(0, len(prompts), batch_size):
        pics = [Image.open(im) if isinstance(im, (str, Path)) else im for im in images[start:start + batch_size]]
        rows = [{"image": im, "prompt": pr} for im, pr in zip(pics, prompts[start:start + batch_size])]
        if probe.feature == "difference":  # same prompts, blank images of the same sizes, in the same pass
            rows += [{"image": Image.new("RGB", row["image"].size, blank), "prompt": row["prompt"]} for row in rows]
        h = hidden_features(model, processor, rows)[probe.pooling][:, probe.layer]
        if probe.feature == "difference":
            h = h[: len(h) // 2] - h[len(h) // 2:]
        scores.append(probe.score(h))
    return np.concatenate(scores) if scores else np.zeros(0)


def score_example(model, processor, image, question: str | None, probe: LinearProbe, instruction: str | None = None,
                  prompt=None, blank_color: Sequence[int] | None = None) -> float:
    """Probability of the probe's positive label for one (image, question); see `score_examples`.

    Example (not run: needs a model):
        >>> probe = load_probe("runs/eval-sft/probes/mirage/probe")  # doctest: +SKIP
        >>> score_example(model, processor, image, "Is there a circle?", probe)  # doctest: +SKIP
        0.83
    """
    return float(score_examples(model, processor, [image], None if question is None else [question], probe,
                                instruction=instruction, prompts=None if prompt is None else [prompt],
                                blank_color=blank_color)[0])


# ----------------------------------------------------------------------------- labels


def _norm(answer: str) -> str:
    return " ".join(str(answer).split()).casefold()


def mirage_labels(preds: Sequence[Prediction], blank_corruption: str = BLANK_CORRUPTION) -> np.ndarray:
    """Label each row 1 (mirage), 0 (not) or -1 (undetermined), following seed 000.

    A row is a mirage when the model answers (does not abstain) and either
      (a) the row is unanswerable: the answer cannot come from the image; or
      (b) the row is answerable, its question is the original one (condition `normal` or `corrupted`), and
          a blank-image row of the same `source_id` gives the same non-abstained parsed answer: the answer
          did not need the image.
    An answerable, answered row of those conditions with no blank-image row for its source is -1: (b)
    cannot be checked. Abstentions are 0. `text_interference` rows change the question, so only (a) applies.

    Example:
        >>> rows = [dict(source_id="a", condition="normal", corruption="", answerable=True,
        ...              abstained=False, parsed="red"),
        ...         dict(source_id="a", condition="corrupted", corruption="blank", answerable=False,
        ...              abstained=False, parsed="Red")]
        >>> mirage_labels(rows).tolist()
        [1, 1]
    """
    blank_answers: dict[str, set[str]] = {}
    for p in preds:
        if p["condition"] == "corrupted" and p.get("corruption", "") == blank_corruption:
            answers = blank_answers.setdefault(str(p["source_id"]), set())
            if not p["abstained"]:
                answers.add(_norm(p["parsed"]))
    labels = np.zeros(len(preds), dtype=np.int8)
    for i, p in enumerate(preds):
        if p["abstained"]:
            continue
        if not p["answerable"]:
            labels[i] = 1
        elif p["condition"] in ("normal", "corrupted"):
            blank = blank_answers.get(str(p["source_id"]))
            labels[i] = -1 if blank is None else int(_norm(p["parsed"]) in blank)
    return labels


def correct_labels(preds: Sequence[Prediction]) -> np.ndarray:
    """Label each row 1 when it was answered correctly (not abstained), else 0."""
    return np.array([int(bool(p["correct"]) and not p["abstained"]) for p in preds], dtype=np.int8)


# ----------------------------------------------------------------------------- storage


def save_probe(directory: str | Path, probe: LinearProbe) -> Path:
    """Write `probe.safetensors` (float32 scaler mean/scale, coef, intercept) and `probe.json` (metadata).

    Returns:
        The directory written.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {"scaler_mean": probe.mean, "scaler_scale": probe.scale, "coef": probe.coef,
               "intercept": np.array([probe.intercept])}
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              str(directory / "probe.safetensors"))
    meta = {k: v for k, v in asdict(probe).items() if k not in ("mean", "scale", "coef", "intercept")}
    meta |= {"n_features": int(probe.coef.shape[0]), "format_version": PROBE_FORMAT_VERSION}
    (directory / "probe.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
    return directory


def load_probe(directory: str | Path) -> LinearProbe:
    """Load a probe written by `save_probe`.

    Raises:
        FileNotFoundError: `probe.json` or `probe.safetensors` is missing.
        ValueError: unknown format version or tensors inconsistent with the metadata.
    """
    from safetensors.numpy import load_file

    directory = Path(directory)
    for name in ("probe.json", "probe.safetensors"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found; a probe directory holds probe.json and "
                                    "probe.safetensors (see rlkit.eval.probes.save_probe).")
    meta = json.loads((directory / "probe.json").read_text())
    if meta.get("format_version") != PROBE_FORMAT_VERSION:
        raise ValueError(f"{directory / 'probe.json'}: format_version {meta.get('format_version')!r}, "
                         f"this rlkit reads {PROBE_FORMAT_VERSION}.")
    tensors = load_file(str(directory / "probe.safetensors"))
    missing = [k for k in _TENSORS if k not in tensors]
    d = meta["n_features"]
    if missing or any(tensors[k].shape != (d,) for k in _TENSORS[:3]):
        raise ValueError(f"{directory / 'probe.safetensors'}: expected tensors {_TENSORS} of width {d}; "
                         f"missing {missing}, shapes { {k: v.shape for k, v in tensors.items()} }.")
    fields = {k: meta[k] for k in ("layer", "pooling", "feature", "label_name", "auroc", "n", "model_id",
                                   "model_hash")}
    return LinearProbe(mean=tensors["scaler_mean"], scale=tensors["scaler_scale"], coef=tensors["coef"],
                       intercept=float(tensors["intercept"][0]), **fields)


def by_damage_auroc(scores: np.ndarray, labels: np.ndarray, damages: Sequence[str],
                    reference: str = "normal") -> dict[str, dict]:
    """AUROC of `scores` on the `reference` rows plus the rows of one damage, for every other damage.

    Tells which damages a probe (or the representation under it) separates from clean rows: a blank image may
    be obvious while a swapped image is invisible. `{damage: {"auroc": value or None, "n": rows}}`; None when
    the subset holds one class only.

    Example:
        >>> by_damage_auroc(np.array([0.1, 0.2, 0.9, 0.15]), np.array([0, 0, 1, 1]),
        ...                 ["normal", "normal", "corrupted/blank", "mismatched/swap"])
        {'corrupted/blank': {'auroc': 1.0, 'n': 3}, 'mismatched/swap': {'auroc': 0.5, 'n': 3}}
    """
    from sklearn.metrics import roc_auc_score

    damages = np.asarray(damages)
    out = {}
    for damage in sorted(set(damages.tolist()) - {reference}):
        m = (damages == reference) | (damages == damage)
        two = len(np.unique(labels[m])) == 2
        out[damage] = {"auroc": float(roc_auc_score(labels[m], scores[m])) if two else None, "n": int(m.sum())}
    return out


def summarize_probes(result: ProbeResult, text_auroc: float | None = None,
                     difference: ProbeResult | None = None, within_question: dict | None = None,
                     by_damage: dict | None = None) -> dict:
    """The `probes.json` summary that `rlkit.eval.report.write_report` reads as `probe_results`.

    `within_question` is `{"probe": auroc, "text": auroc, "pairs": n}` from `within_group_auroc` on the probe's
    best-layer and the text baseline's out-of-fold scores, grouped by `source_id` (None when not computed).
    `by_damage` is `by_damage_auroc` of the best-layer out-of-fold scores (None when not computed).
    """
    return {
        "probe_format_version": PROBE_FORMAT_VERSION,
        "probe": result.to_dict(),
        "text_baseline": {"auroc": text_auroc},
        "probe_minus_text": None if text_auroc is None else result.best_auroc - text_auroc,
        "difference_probe": None if difference is None else difference.to_dict(),
        "within_question": within_question,
        "by_damage": by_damage,
    }


def save_probe_results(out_dir: str | Path, result: ProbeResult, text_auroc: float | None = None,
                       difference: ProbeResult | None = None, model_id: str | None = None,
                       model_hash: str | None = None, within_question: dict | None = None,
                       by_damage: dict | None = None) -> dict:
    """Write one probe folder (e.g. `probes/mirage/`): `probes.json`, `probe/` and `difference_probe/` if given.

    Returns:
        The summary written to `probes.json` (see `summarize_probes`).
    """
    out_dir = Path(out_dir)
    save_probe(out_dir / "probe", replace(result.probe, model_id=model_id, model_hash=model_hash))
    if difference is not None:
        save_probe(out_dir / "difference_probe", replace(difference.probe, model_id=model_id,
                                                          model_hash=model_hash))
    summary = summarize_probes(result, text_auroc, difference, within_question, by_damage)
    (out_dir / "probes.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary
