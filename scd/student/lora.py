"""LoRA students (``student.lora``), through peft: the pretrained weights stay frozen and low-rank adapters on the
attention (and, for some families, MLP) projections train. Checkpoints hold the adapters only; ``student/`` holds them
with the base model's name (``adapter_config.json``), which the Auto classes, the evaluation stage and
``scd.predict`` load as they load full weights. ``python -m scd.student.lora RUN OUTPUT`` copies a run's LoRA student
elsewhere; with ``--merged`` it writes the adapters merged into full weights, for tools that do not read adapters.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel

from scd.config import LoraConfig
from scd.models import ADAPTER_CONFIG, Arch, load_tokenizer

log = logging.getLogger(__name__)

# model_type -> the modules adapted by default: every attention projection (T5: q, k, v, o of self- and
# cross-attention); GPT-NeoX fuses q, k, v into one.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "t5": ["q", "k", "v", "o"],
    "mt5": ["q", "k", "v", "o"],
    "gpt_neox": ["query_key_value", "dense"],
    **{family: ["q_proj", "k_proj", "v_proj", "o_proj"]
       for family in ("llama", "qwen2", "qwen3", "olmo2", "mistral", "gemma2", "phi3")},  # fmt: skip
}


def target_modules(model: PreTrainedModel, lora: LoraConfig) -> list[str]:
    """The configured modules, else the model family's defaults; a ValueError where there are none."""
    if lora.target_modules is not None:
        return list(lora.target_modules)
    model_type = model.config.model_type
    if model_type not in DEFAULT_TARGETS:
        raise ValueError(f"student.lora.target_modules: no default for model_type {model_type!r}; name the modules to "
                         "adapt, e.g. student.lora.target_modules=[q_proj,v_proj]")  # fmt: skip
    return DEFAULT_TARGETS[model_type]


def trainable_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    return (sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters()))


def apply_lora(model: PreTrainedModel, lora: LoraConfig, arch: Arch, seed: int = 0) -> torch.nn.Module:
    """``model`` frozen, with LoRA adapters on its target modules (a peft model), initialized from ``seed``; logs
    the trainable share."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = target_modules(model, lora)
    config = PeftLoraConfig(task_type="SEQ_2_SEQ_LM" if arch == "seq2seq" else "CAUSAL_LM", r=lora.r,
                            lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)  # fmt: skip
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            adapted = get_peft_model(model, config)
    except ValueError as err:
        raise ValueError(f"student.lora.target_modules={targets}: {str(err).splitlines()[0]}") from None
    trainable, total = trainable_parameters(adapted)
    log.info("student: LoRA r=%d on %s: %s trainable parameters of %s (%.2f%%)", lora.r, ", ".join(targets),
             f"{trainable:,}", f"{total:,}", 100 * trainable / total)  # fmt: skip
    return adapted


def export(student_dir: Path, output: Path, merged: bool) -> Path:
    """The LoRA student in ``student_dir`` written to ``output``: as it is (adapters and the base model's name), or
    ``merged`` into the base weights as full weights; with its tokenizer either way."""
    from peft import AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM, PeftConfig

    if not (student_dir / ADAPTER_CONFIG).is_file():
        raise ValueError(f"{student_dir}: no LoRA student here (no {ADAPTER_CONFIG})")
    if not merged:
        shutil.copytree(student_dir, output, dirs_exist_ok=True)
        return output
    task = PeftConfig.from_pretrained(student_dir).task_type
    auto = AutoPeftModelForSeq2SeqLM if task == "SEQ_2_SEQ_LM" else AutoPeftModelForCausalLM
    merged = auto.from_pretrained(student_dir).merge_and_unload()
    merged.save_pretrained(output)
    load_tokenizer(str(student_dir)).save_pretrained(output)
    return output


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scd.student.lora", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run directory (its student/) or a LoRA student directory")
    parser.add_argument("output", type=Path, help="where to write the student")
    parser.add_argument("--merged", action="store_true",
                        help="merge the adapters into the base weights and write full weights")
    args = parser.parse_args(argv)
    student_dir = args.run / "student" if (args.run / "student").is_dir() else args.run
    try:
        written = export(student_dir, args.output, args.merged)
    except (ValueError, OSError) as err:
        print(f"scd: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"wrote the {'merged ' if args.merged else 'LoRA '}student to {written}")


if __name__ == "__main__":
    main()
