"""Turn a finished run folder into a folder ready for the Hugging Face hub, and optionally push it.

    rlkit publish --run runs/tiny/hallucination-groundedness/seed0 --out publish/tiny-halluc
    rlkit publish --run runs/qwen/mixed-groundedness/seed0 --out publish/qwen-mixed --merge \
        --repo-id me/qwen2.5-vl-3b-grounded --push --private

Layout of `--out` (details in docs/publishing.md):

    README.md                 model card: hub metadata (base_model, datasets, tags, license, model-index) + body
    config.json, model*.safetensors, processor files   a full checkpoint (copied, or merged with --merge)
    adapter_config.json, adapter_model.safetensors     or the LoRA adapter itself (a LoRA run without --merge)
    adapter/                  the LoRA adapter, when --merge put the merged weights at the root
    run.json, recipe.yaml, data_manifest.json          provenance (secret-looking keys removed)
    eval/                     metrics.json, consistency.json, report.md + PNGs, probes/<label>/{probes.json, probe/}

Nothing pickled is published and the folder is written atomically. `push` uploads it with `huggingface_hub`; the
token comes from `HF_TOKEN` or `hf auth login` and is never printed or written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from rlkit.card import build_card, card_metrics

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# What a checkpoint folder may contribute: weights, configs, tokenizer / processor files, chat templates.
MODEL_SUFFIXES = (".json", ".safetensors", ".txt", ".jinja", ".model", ".tiktoken")
TRAINING_FILES = ("trainer_state.json", "training_args.json", "all_results.json", "train_results.json")
# Files `save_pretrained` writes for the weights; the rest of a checkpoint folder belongs to the processor.
WEIGHT_FILE = re.compile(r"(config|generation_config)\.json|model[-\w.]*\.safetensors(\.index\.json)?|adapter_.*")
EVAL_FILES = ("metrics.json", "consistency.json", "report.md")
SECRET_KEY = re.compile(r"token|secret|password|api_key|credential", re.IGNORECASE)
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

class PushError(RuntimeError):
    """`push` cannot start (offline, no token, a folder that must not be uploaded); nothing was uploaded."""


# ----------------------------------------------------------------------------- checks


def check_run(run_dir: str | os.PathLike) -> dict:
    """Check that `run_dir` is a finished run (run.json with status done, model/, eval/metrics.json).

    Returns:
        The run record (`run.json`).

    Raises:
        FileNotFoundError: a required file or folder is missing; the message names it.
        ValueError: run.json is not valid JSON, or the run has not finished.
    """
    run_dir = Path(run_dir)
    record_path, model, metrics = run_dir / "run.json", run_dir / "model", run_dir / "eval" / "metrics.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} is missing: {run_dir} is not a finished run folder (the ablation "
                                "runner writes run.json with status 'done' when a run ends)")
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{record_path}: not valid JSON ({err.msg}, line {err.lineno})") from err
    if record.get("status") != "done":
        raise ValueError(f"{record_path}: status is {record.get('status')!r}, not 'done': the run has not "
                         "finished; resume it with the ablation runner, then publish")
    if not model.is_dir():
        raise FileNotFoundError(f"{model} is missing: the run folder holds no trained model")
    if not (model / "config.json").is_file() and not (model / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{model / 'config.json'} (or adapter_config.json) is missing: no checkpoint")
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} is missing: evaluate the model first (`rlkit evaluate --model {model} "
                                f"--data DATA --out {run_dir / 'eval'}`)")
    return record


def _tokens() -> list[str]:
    """Token values this process could know (environment, local login), to make sure none is published."""
    import huggingface_hub

    found = [os.environ.get(name, "") for name in TOKEN_ENV] + [huggingface_hub.get_token() or ""]
    return sorted({t.strip() for t in found if len(t.strip()) >= 8})


def check_folder(folder: str | os.PathLike) -> None:
    """Refuse a folder holding pickle files or the value of a Hugging Face token (defence in depth).

    Raises:
        ValueError: names the offending file (never the token).
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    pickles = [str(p.relative_to(folder)) for p in files if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickles:
        raise ValueError(f"{folder} holds pickle files {pickles}: publish safetensors / JSON only")
    tokens = [t.encode() for t in _tokens()]
    overlap = max((len(t) for t in tokens), default=1) - 1
    for path in files if tokens else []:
        with open(path, "rb") as f:  # chunked: weight files can be many GB
            tail = b""
            while chunk := f.read(1 << 24):
                if any(t in tail + chunk for t in tokens):
                    raise ValueError(f"{path} contains the value of your Hugging Face token: remove it before "
                                     "publishing (and consider revoking the token)")
                tail = (tail + chunk)[-overlap:]


def _scrub(obj):
    """Drop secret-looking keys (hub_token, ...) from nested dicts before they are published."""
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items() if not SECRET_KEY.search(str(k))}
    return [_scrub(v) for v in obj] if isinstance(obj, list) else obj


# ----------------------------------------------------------------------------- model files and lineage


def _copy_files(src: Path, dst: Path, keep) -> None:
    """Copy the top-level files of `src` that are safe to publish and that `keep(name)` accepts.

    Left behind: sub-folders (checkpoint-*/), pickles (training_args.bin, optimizer.pt), READMEs, trainer state.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        if path.is_file() and path.suffix in MODEL_SUFFIXES and path.name not in TRAINING_FILES and keep(path.name):
            shutil.copy2(path, dst / path.name)


def _require_safetensors(model_dir: Path, adapter: bool) -> None:
    pattern = "adapter_model*.safetensors" if adapter else "model*.safetensors"
    if not list(model_dir.glob(pattern)):
        pickled = [p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES]
        raise FileNotFoundError(f"{model_dir} has no {pattern} weights (found {pickled or 'none'}); pickle weights "
                                "are not published: re-save the model with save_pretrained (safetensors)")


def _merge(model_dir: Path, dst: Path) -> None:
    """Load base + adapter the way training and evaluation do, merge the LoRA weights, save safetensors."""
    from rlkit.models.load import ModelArguments, load_model

    model = load_model(ModelArguments(model_name_or_path=str(model_dir), dtype="auto"))
    # transformers >= 5 always writes safetensors (save_pretrained has no safe_serialization switch any more).
    model.merge_and_unload().save_pretrained(dst)
    logger.info("Merged the LoRA adapter of %s into its base", model_dir)


def _find_manifest(record: dict, run_dir: Path) -> Path | None:
    """run.json's data_dir, else the ablation layout `<name>/data/` two levels above the run."""
    candidates = [Path(record["data_dir"]) / "manifest.json"] if record.get("data_dir") else []
    candidates.append(run_dir.resolve().parent.parent / "data" / "manifest.json")
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        logger.warning("No data manifest at %s: the card says so and no data_manifest.json is published",
                       " or ".join(map(str, candidates)))
    return found


# ----------------------------------------------------------------------------- publish / push


def publish(run_dir: str | os.PathLike, out_dir: str | os.PathLike, merge: bool = False,
            license: str = "apache-2.0", overwrite: bool = False, repo_id: str | None = None) -> Path:
    """Write a hub-ready folder from a finished run: model, model card, provenance, evaluation and probes.

    Args:
        run_dir: `runs/<name>/<arm>-<reward>/seed<k>` (run.json, model/, eval/).
        out_dir: destination; written to a temporary folder next to it, then renamed.
        merge: for a LoRA run, publish merged weights at the root and the adapter in `adapter/`; without it the
            adapter itself is the root. A full checkpoint is copied as is either way.
        license: hub license id for the card metadata.
        overwrite: replace an existing `out_dir`.
        repo_id: hub repo the folder is meant for (named in the card's loading snippets).

    Returns:
        `out_dir`.

    Raises:
        FileExistsError: `out_dir` exists and `overwrite` is False.
        FileNotFoundError, ValueError: the run is incomplete (see `check_run`), its weights are pickle only, or
            the output would hold a pickle file or a token.
    """
    run_dir, out = Path(run_dir), Path(out_dir)
    record = check_run(run_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if out.resolve() == run_dir.resolve() or out.resolve() in run_dir.resolve().parents:
        raise ValueError(f"--out {out} is the run folder or contains it; choose a separate folder")
    model_dir, eval_dir = run_dir / "model", run_dir / "eval"
    adapter = (model_dir / "adapter_config.json").is_file()
    if merge and not adapter:
        logger.warning("--merge: %s is a full checkpoint, not a LoRA adapter; copying it as is", model_dir)
    merge = merge and adapter
    _require_safetensors(model_dir, adapter)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # Model
        if merge:
            _merge(model_dir, tmp)
            _copy_files(model_dir, tmp, keep=lambda name: not WEIGHT_FILE.fullmatch(name))  # the processor
            _copy_files(model_dir, tmp / "adapter", keep=lambda name: name.startswith("adapter_"))
        else:
            _copy_files(model_dir, tmp, keep=lambda name: True)

        # Provenance
        (tmp / "run.json").write_text(json.dumps(_scrub(record), indent=2, default=str) + "\n")
        recipe = record.get("recipe")
        if recipe is None and record.get("recipe_path") and Path(record["recipe_path"]).is_file():
            recipe = yaml.safe_load(Path(record["recipe_path"]).read_text())
        if recipe:
            (tmp / "recipe.yaml").write_text(yaml.safe_dump(_scrub(recipe), sort_keys=False))
        manifest_path = _find_manifest(record, run_dir)
        manifest = json.loads(manifest_path.read_text()) if manifest_path else None
        if manifest is not None:
            (tmp / "data_manifest.json").write_text(json.dumps(_scrub(manifest), indent=2) + "\n")

        # Evaluation: report, plots, metrics and the probes (safetensors + JSON)
        (tmp / "eval").mkdir()
        for path in sorted(eval_dir.iterdir()):
            if path.name in EVAL_FILES or path.suffix == ".png":
                shutil.copy2(path, tmp / "eval" / path.name)
        if (eval_dir / "probes").is_dir():
            shutil.copytree(eval_dir / "probes", tmp / "eval" / "probes",
                            ignore=shutil.ignore_patterns(*(f"*{s}" for s in PICKLE_SUFFIXES)))

        # Model card, then the last checks and the swap into place (the old folder goes only once the new is in)
        build_card(record, _scrub(recipe or {}), manifest, tmp / "eval", license=license, merged=merge,
                   library="peft" if adapter and not merge else "transformers", repo_id=repo_id).save(tmp / "README.md")
        check_folder(tmp)
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Published %s -> %s", run_dir, out)
    return out


def _offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def push(out_dir: str | os.PathLike, repo_id: str, private: bool = False) -> str:
    """Upload a published folder to the hub model repo `repo_id` (created if missing) and return its URL.

    The token comes from `HF_TOKEN` or the local login (`hf auth login`); it goes to `HfApi` only, never to a log.
    The folder is checked again (no pickle file, no token value) before anything is sent.

    Raises:
        PushError: the folder is not a published folder or fails the checks, the hub is offline
            (HF_HUB_OFFLINE=1), or no token is available. Nothing is uploaded and the folder is left as it is.
    """
    import huggingface_hub

    out = Path(out_dir)
    if not (out / "README.md").is_file():
        raise PushError(f"{out} is not a published folder (no README.md); run `rlkit publish` first")
    try:
        check_folder(out)
    except ValueError as err:
        raise PushError(str(err)) from None
    if _offline():
        raise PushError(f"cannot push to {repo_id}: the hub is offline (HF_HUB_OFFLINE=1). The published folder "
                        f"{out} is intact: push it later with `hf upload {repo_id} {out}` or rerun with --push")
    token = huggingface_hub.get_token()
    if not token:
        raise PushError(f"cannot push to {repo_id}: no Hugging Face token. Set HF_TOKEN or run `hf auth login`; "
                        f"the published folder {out} is intact")
    api = huggingface_hub.HfApi(token=token)
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=out, repo_type="model",
                      commit_message="Upload a model published with rlkit")
    logger.info("Pushed %s to %s", out, url)
    return str(url)


def main(args: argparse.Namespace) -> int:
    """`rlkit publish`: publish, print a short summary, push when asked (see the module docstring)."""
    if args.push and not args.repo_id:
        raise ValueError("--push needs --repo-id (user/name or org/name)")
    out = publish(args.run, args.out, merge=args.merge, license=args.license, overwrite=args.overwrite,
                  repo_id=args.repo_id)
    print(f"published {out}")
    for _, label, value, *_ in card_metrics(json.loads((out / "eval" / "metrics.json").read_text()), out / "eval"):
        print(f"  {label:<46} {value:.3f}")
    if args.push:
        try:
            print(f"pushed to {push(out, args.repo_id, private=args.private)}")
        except PushError as err:
            logger.error("%s", err)
            return 1
    return 0


if __name__ == "__main__":
    from rlkit.cli import main as cli_main

    sys.exit(cli_main(["publish", *sys.argv[1:]]))
