"""One way to load a VLM and its processor, used by every stage (SFT, GRPO, evaluation, publishing).

Takes a local checkpoint folder or a hub id. `ModelArguments` extends TRL's `ModelConfig` with the VLM knobs
users look for (freeze the vision tower, keep LoRA off it, image resolution), so recipes set them as flat keys:

    model_name_or_path: Qwen/Qwen2.5-VL-3B-Instruct
    use_peft: true          # LoRA on the language model only (vLLM cannot serve LoRA on the vision tower)
    load_in_4bit: true      # QLoRA (needs `pip install 'rlkit[bnb]'`)
    freeze_vision_tower: true
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from trl import ModelConfig

logger = logging.getLogger(__name__)

# Module-name fragments of the vision side across families: Qwen2/2.5-VL `visual` (patch embed, blocks and
# merger), LLaVA `vision_tower` + `multi_modal_projector`.
VISION_TOWER_KEYS = ("visual", "vision_tower", "vision_model")
VISION_SIDE_KEYS = VISION_TOWER_KEYS + ("multi_modal_projector",)
DEFAULT_LORA_EXCLUDE = r".*(" + "|".join(VISION_SIDE_KEYS) + r").*"


@dataclass
class ModelArguments(ModelConfig):
    """TRL's `ModelConfig` plus the vision-language knobs."""

    freeze_vision_tower: bool = field(
        default=False,
        metadata={"help": "Freeze the vision encoder (and Qwen's patch merger) in full fine-tuning."},
    )
    lora_exclude_modules: str | None = field(
        default=DEFAULT_LORA_EXCLUDE,
        metadata={"help": "Regex of module names LoRA must not touch. The default keeps LoRA off the vision "
                  "tower and projector; set to null to allow it."},
    )
    min_pixels: int | None = field(
        default=None, metadata={"help": "Qwen-VL image processor: smallest image area after resizing."}
    )
    max_pixels: int | None = field(
        default=None, metadata={"help": "Qwen-VL image processor: largest image area after resizing."}
    )

    def __post_init__(self):
        super().__post_init__()
        if (self.load_in_4bit or self.load_in_8bit) and not self.use_peft:
            raise ValueError(
                "load_in_4bit / load_in_8bit train quantized weights only through adapters: set use_peft: true "
                "(QLoRA) or drop the quantization."
            )


def is_vision_module(name: str) -> bool:
    """True for parameters/modules of the vision encoder or the vision-language projector."""
    return any(key in name.split(".") or f".{key}." in f".{name}." for key in VISION_SIDE_KEYS)


def resolve_model_path(name_or_path: str) -> str:
    """Check that `name_or_path` is a local checkpoint or a hub id that can be reached; return it.

    Raises:
        FileNotFoundError: a local-looking path (absolute, `./`, `~`) that does not exist, or a folder
            without `config.json`.
        OSError: a hub id while the hub is offline and the id is not in the local cache.
    """
    path = Path(os.path.expanduser(name_or_path))
    if path.exists():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise FileNotFoundError(
                f"{path} exists but holds no config.json (nor adapter_config.json): it is not a model checkpoint folder"
            )
        return str(path)
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_local:
        raise FileNotFoundError(f"Model path {name_or_path} does not exist")
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(name_or_path, "config.json"), str):
        raise OSError(
            f"{name_or_path!r} is not a local folder and looks like a hub id, but the hub is offline "
            "(HF_HUB_OFFLINE=1) and it is not in the local cache. Download it first "
            f"(`hf download {name_or_path}`), pass a local path, or unset HF_HUB_OFFLINE."
        )
    return name_or_path


def _require(package: str, extra: str, what: str):
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise ImportError(f"{what} needs {package}: pip install 'rlkit[{extra}]'") from err


def _check_architecture(name_or_path: str, trust_remote_code: bool, revision: str):
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as VLMS,
    )

    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    if config.model_type not in VLMS and not (trust_remote_code and getattr(config, "auto_map", None)):
        raise ValueError(
            f"{name_or_path} is a {config.model_type!r} model ({', '.join(config.architectures or [])}), not a "
            "vision-language model that AutoModelForImageTextToText can load. Supported model types include: "
            f"{', '.join(sorted(VLMS)[:25])}, ..."
        )
    return config


def _dtype(name: str | None):
    import torch

    if name in (None, "auto"):
        return "auto"
    if not hasattr(torch, name) or not isinstance(getattr(torch, name), torch.dtype):
        raise ValueError(f"Unknown dtype {name!r}: use auto, float32, bfloat16 or float16")
    return getattr(torch, name)


def load_model(args: ModelArguments, gradient_checkpointing: bool = False, device_map=None,
               trust_remote_code: bool = False):
    """Load the VLM described by `args`, with optional QLoRA, LoRA and a frozen vision tower.

    Args:
        args: model arguments (path or hub id, dtype, attention, LoRA/QLoRA, freezing).
        gradient_checkpointing: enable it on the loaded model (off by default: 2.5x slower and no memory
            win at tiny scale).
        device_map: passed to `from_pretrained`.
        trust_remote_code: run model code from the checkpoint (off unless asked; TRL keeps this flag on the
            training config, so it is passed here rather than stored in `args`).

    Returns:
        A `transformers` model, or a `peft.PeftModel` when `args.use_peft`.
    """
    from transformers import AutoModelForImageTextToText

    name = resolve_model_path(args.model_name_or_path)
    adapter = Path(name) / "adapter_config.json"
    if adapter.exists():  # a saved LoRA run: load its base the same way, then the adapter on top
        import peft

        base = json.loads(adapter.read_text())["base_model_name_or_path"]
        base_args = replace(args, model_name_or_path=base, use_peft=False, load_in_4bit=False, load_in_8bit=False)
        model = load_model(base_args, gradient_checkpointing,
                           device_map, trust_remote_code)
        return peft.PeftModel.from_pretrained(model, name, is_trainable=args.use_peft)
    _check_architecture(name, trust_remote_code, args.model_revision)
    kwargs = {
        "revision": args.model_revision, "trust_remote_code": trust_remote_code,
        "dtype": _dtype(args.dtype), "device_map": device_map,
    }
    if args.attn_implementation:
        kwargs["attn_implementation"] = args.attn_implementation
    if args.load_in_4bit or args.load_in_8bit:
        _require("bitsandbytes", "bnb", "QLoRA (load_in_4bit / load_in_8bit)")
        from transformers import BitsAndBytesConfig

        compute = _dtype(args.dtype)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=args.load_in_4bit, load_in_8bit=args.load_in_8bit,
            bnb_4bit_quant_type=args.bnb_4bit_quant_type, bnb_4bit_use_double_quant=args.use_bnb_nested_quant,
            bnb_4bit_compute_dtype=None if compute == "auto" else compute,
            # Quantizing the vision tower hurts grounding and saves little memory. transformers 5 matches these
            # from the start of the module name (as regexes), so a bare "visual" would skip nothing.
            llm_int8_skip_modules=[rf"(.*\.)?{key}" for key in VISION_SIDE_KEYS] + ["lm_head"],
        )
    model = AutoModelForImageTextToText.from_pretrained(name, **kwargs)

    if args.freeze_vision_tower:
        frozen = 0
        for pname, param in model.named_parameters():
            if any(key in pname for key in VISION_TOWER_KEYS):
                param.requires_grad_(False)
                frozen += param.numel()
        if frozen == 0:
            raise ValueError(f"freeze_vision_tower: no parameter of {name} matches {VISION_TOWER_KEYS}")
        logger.info("Froze %d vision-tower parameters", frozen)

    if args.use_peft:
        import peft

        if args.load_in_4bit or args.load_in_8bit:
            model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        config = peft.LoraConfig(
            r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, bias="none",
            target_modules=args.lora_target_modules or "all-linear",
            exclude_modules=args.lora_exclude_modules, modules_to_save=args.lora_modules_to_save,
            use_rslora=args.use_rslora, use_dora=args.use_dora, task_type="CAUSAL_LM",
        )
        model = peft.get_peft_model(model, config)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if args.use_peft:
            model.enable_input_require_grads()
    return model


def load_processor(args: ModelArguments, padding_side: str = "left", trust_remote_code: bool = False):
    """Load the processor; left padding so batched generation and last-token hidden states line up."""
    from transformers import AutoProcessor

    name = resolve_model_path(args.model_name_or_path)
    kwargs = {}
    if args.min_pixels is not None:
        kwargs["min_pixels"] = args.min_pixels
    if args.max_pixels is not None:
        kwargs["max_pixels"] = args.max_pixels
    processor = AutoProcessor.from_pretrained(
        name, revision=args.model_revision, trust_remote_code=trust_remote_code, **kwargs
    )
    processor.tokenizer.padding_side = padding_side
    return processor
