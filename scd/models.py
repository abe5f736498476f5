"""Model and tokenizer loading shared by teacher, student and simulator.

A model comes from a checkpoint (``name_or_path``: a hub id or a local directory written by ``save_pretrained``)
or, for offline smoke runs, from a random initialization described in config (``random_init``: a Hugging Face
``model_type`` and its config keys). The tokenizer ``"byt5"`` needs no files, so random-init models run anywhere.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    ByT5Tokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

# What the cache keeps of a training (a task's trained teacher, a judge's score) trains on this many CPU threads,
# whatever the run's `threads`: the order of a multi-threaded reduction changes float sums, and training amplifies
# that into another model (one and two threads gave different teacher weights after 50 steps).
CACHED_TRAINING_THREADS = 1

Arch = Literal["causal", "seq2seq"]
ARCHS: tuple[Arch, ...] = ("seq2seq", "causal")
FILE_FREE_TOKENIZERS = {"byt5": ByT5Tokenizer}
# What peft's save_pretrained writes beside the adapters: their settings and the base model's name.
ADAPTER_CONFIG = "adapter_config.json"
# Config keys that load_model derives from the tokenizer; a random_init that sets them would disagree with it.
TOKENIZER_KEYS = ("vocab_size", "pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id")


def check_arch(arch: str, key: str = "arch") -> None:
    """The one check of an architecture name; ``key`` names the config key (``student.arch``)."""
    if arch not in ARCHS:
        raise ValueError(f"{key} must be one of {list(ARCHS)}, got {arch!r}")


def check_model_source(key: str, **sources: Any) -> None:
    """The one check that a model comes from exactly one of ``sources`` (``name_or_path``, ``random_init``, ...);
    ``key`` names the config group."""
    if sum(value is not None for value in sources.values()) != 1:
        names = list(sources)
        raise ValueError(f"{key}: set exactly one of {', '.join(names[:-1])} and {names[-1]}")


def check_random_init(random_init: dict[str, Any], key: str) -> None:
    """Check a ``random_init`` dict against its ``model_type``'s config class: a misspelled key (``num_layer``) would
    otherwise be stored as an unused attribute while the model keeps the default. ``key`` names the config key."""
    model_type = random_init.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"{key}.model_type must name a transformers model type (t5, gpt_neox, ...), got {model_type!r}")
    config_class = CONFIG_MAPPING[model_type]
    known = (
        set(config_class().to_dict())
        | set(inspect.signature(config_class.__init__).parameters)
        | set(getattr(config_class, "attribute_map", {}))
    ) - {"self", *TOKENIZER_KEYS}
    for name in random_init:
        if name in TOKENIZER_KEYS:
            raise ValueError(f"{key}: {name!r} is set from the tokenizer; remove it")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{key}: unknown key {name!r} for {model_type} ({config_class.__name__}){hint}")


class InputTooLongError(ValueError):
    """A model input longer than its configured maximum: names the example and the setting."""


@dataclass(frozen=True)
class InputLimit:
    """The longest input (tokens) the ``group`` model (student or simulator) is given, and what happens to a longer
    one: refused, or with ``truncate`` cut to the limit. Attention memory grows with the square of the length, so an
    uncapped input (a pasted document as a question) ends in an allocation failure instead of an error."""

    max_tokens: int = 512
    truncate: bool = False
    group: str = "student"

    def apply(self, ids: list[int], example_id: str) -> list[int]:
        """``ids`` when within the limit; else an InputTooLongError naming the example, or with ``truncate`` the
        first ``max_tokens - 1`` tokens and the last one (an encoder input's end-of-sequence token, a causal prompt's
        line break)."""
        if len(ids) <= self.max_tokens:
            return ids
        if not self.truncate:
            raise InputTooLongError(
                f"example {example_id!r}: the {self.group}'s input is {len(ids)} tokens, more than "
                f"{self.group}.max_input_tokens={self.max_tokens}; raise it, or set {self.group}.truncate_inputs=true "
                "to cut longer inputs")  # fmt: skip
        return ids[: self.max_tokens - 1] + ids[-1:]


def load_tokenizer(name_or_path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer by hub id or path; ``"byt5"`` builds ByT5's byte tokenizer without any file."""
    if name_or_path in FILE_FREE_TOKENIZERS:
        tokenizer = FILE_FREE_TOKENIZERS[name_or_path]()
    else:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        # Decoder-only checkpoints often ship without a pad token; reuse eos so batches can be padded.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_config_source(name_or_path: str) -> str:
    """Where a model's config is: ``name_or_path`` itself, or for a directory of LoRA adapters (``ADAPTER_CONFIG``)
    the base model it names. (The Auto classes load such a directory, base and adapters, by themselves.)"""
    adapter = Path(name_or_path) / ADAPTER_CONFIG
    if adapter.is_file():
        return json.loads(adapter.read_text())["base_model_name_or_path"]
    return name_or_path


def torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}: use float32, bfloat16 or float16")
    return dtype


def load_model(
    arch: Arch,
    tokenizer: PreTrainedTokenizerBase,
    *,
    name_or_path: str | None = None,
    random_init: dict[str, Any] | None = None,
    dtype: str = "float32",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    seed: int = 0,
) -> PreTrainedModel:
    """Load a pretrained model, or build a randomly initialized one sized to ``tokenizer``."""
    check_arch(arch)
    check_model_source("model", name_or_path=name_or_path, random_init=random_init)
    auto_class = AutoModelForCausalLM if arch == "causal" else AutoModelForSeq2SeqLM
    if name_or_path is not None:
        return auto_class.from_pretrained(
            name_or_path, dtype=torch_dtype(dtype), device_map=device_map, trust_remote_code=trust_remote_code
        )
    check_random_init(random_init, "random_init")
    init = dict(random_init)
    model_type = init.pop("model_type")
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
    }
    if arch == "seq2seq":
        special["decoder_start_token_id"] = tokenizer.pad_token_id
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **special, **init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto_class.from_config(config, dtype=torch_dtype(dtype))
    return model


def inference_device(accelerator: str) -> torch.device:
    """Where evaluation runs outside a Trainer: the GPU when the Trainer would use one, else the CPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch's intra-op thread count set to ``n`` inside the block, and put back after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
