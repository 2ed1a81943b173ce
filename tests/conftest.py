"""Test-wide setup: offline, CPU, deterministic, quiet."""

import os
from pathlib import Path

# Set before transformers / datasets / huggingface_hub are imported anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("ACCELERATE_USE_CPU", "true")
os.environ.setdefault("WANDB_MODE", "disabled")


import pytest


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    """The embedded Qwen2.5-VL-architecture tiny model, built once per test session (seconds)."""
    from rlkit.models.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-qwen2_5_vl"
    make_tiny_model("qwen2_5_vl", path)
    return path


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory):
    """The embedded LLaVA-architecture tiny model."""
    from rlkit.models.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("models") / "tiny-llava"
    make_tiny_model("llava", path)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A small build of the tiny recipe's data config (same scenes and conditions, fewer sources)."""
    import yaml

    from data_builders.build import build

    config = yaml.safe_load(Path("recipes/tiny/data.yaml").read_text())
    config.update(train_sources=48, eval_sources=12)
    path = tmp_path_factory.mktemp("data") / "tiny"
    build(config, path)
    return path
