"""Timing and peak memory of the teacher's decoding methods, each measured in a fresh subprocess.

A measurement builds the tokenizer (from its JSON) and the seeded random-init model in a new process, runs one method
``repeats`` times and reports every run's wall time and process CPU time (with one thread, a measure of the work
done that other processes on shared cores disturb less), the tokens of the last run, the resident memory after loading
and its peak (``ru_maxrss``; a fresh process per measurement keeps one method's peak out of the next one's), and on a
GPU the peak allocated memory.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import psutil
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from baselines import hf_generate, per_example_loop
from scd.teacher.decoding import DecodingSettings, decode
from scd.teacher.strategies import ContrastWrong
from workload import Workload, build_model


@dataclass(frozen=True)
class Method:
    label: str
    kind: str  # "scd", "loop", "hf_cfg" or "hf_greedy"
    settings: dict[str, Any] = field(default_factory=dict)


METHODS = {
    "scd": Method("scd contrastive: shared prefix, merged branches (default)", "scd",
                  dict(shared_prefix=True, merge_branches=True)),
    "scd_separate": Method("scd contrastive: shared prefix, separate branches", "scd",
                           dict(shared_prefix=True, merge_branches=False)),
    "scd_no_prefix": Method("scd contrastive: no shared prefix, merged branches", "scd",
                            dict(shared_prefix=False, merge_branches=True)),
    "scd_no_prefix_separate": Method("scd contrastive: no shared prefix, separate branches", "scd",
                                     dict(shared_prefix=False, merge_branches=False)),
    "loop": Method("(a) per-example loop, two DynamicCaches", "loop"),
    "hf_cfg": Method("(b) HF generate, guidance_scale=1/(1-lam), batched", "hf_cfg"),
    "hf_greedy": Method("(c) HF greedy generate, batched", "hf_greedy"),
}


@dataclass(frozen=True)
class Job:
    method: Method
    size: str
    device: str
    dtype: str
    threads: int
    tokenizer_json: str
    workload: Workload
    lam: float
    max_new_tokens: int
    repeats: int


def _runner(job: Job, model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> Callable[[], list[list[int]]]:
    w, method = job.workload, job.method
    if method.kind == "scd":
        settings = DecodingSettings(max_new_tokens=job.max_new_tokens, **method.settings)
        prompts = [[gold, wrong] for gold, wrong in zip(w.gold_suffixes, w.wrong_suffixes)]
        strategy = ContrastWrong(lam=job.lam)
        return lambda: decode(model, tokenizer, w.prefix_ids, prompts, strategy, settings, w.separator)
    if method.kind == "loop":
        return lambda: per_example_loop(model, tokenizer, w, job.lam, job.max_new_tokens)
    if method.kind in ("hf_cfg", "hf_greedy"):
        lam = job.lam if method.kind == "hf_cfg" else None
        return lambda: hf_generate(model, tokenizer, w, lam, job.max_new_tokens)
    raise ValueError(f"unknown method kind {method.kind!r}")


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_job(job: Job) -> dict[str, Any]:
    """Runs in the subprocess: build, run ``repeats`` times, report times, tokens and memory."""
    torch.set_num_threads(job.threads)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(job.tokenizer_json), pad_token="<pad>", eos_token="</s>"
    )
    model = build_model(job.size, tokenizer, job.device, job.dtype)
    rss_loaded = psutil.Process().memory_info().rss
    if job.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    run = _runner(job, model, tokenizer)
    times, cpu_times, tokens = [], [], []
    for _ in range(job.repeats):
        _synchronize(job.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        tokens = run()
        _synchronize(job.device)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    result = {
        "times": times,
        "cpu_times": cpu_times,
        "tokens": tokens,
        "rss_loaded_mb": rss_loaded / 2**20,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,  # Linux reports KiB
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if job.device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def in_subprocess(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` in a fresh spawned process (so peaks and thread pools don't carry over) and return its result."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()


def measure(job: Job) -> dict[str, Any]:
    return in_subprocess(run_job, job)


def compare_tokens(ours: list[list[int]], other: list[list[int]]) -> dict[str, float]:
    """How often two decoders disagree.

    ``rows_differing``: the share of rows whose outputs are not identical. ``flip_rate``: diverging rows per token
    compared; after its first different token a row's contexts differ, so each row counts at most one flip and only
    its tokens up to the flip are compared. On random-init models, whose top logits are close, floating-point
    differences between batched and one-row kernels flip an argmax now and then.
    """
    differing, compared = 0, 0
    for a, b in zip(ours, other, strict=True):
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        if a != b:
            differing += 1
            compared += same + 1
        else:
            compared += len(a)
    return {"rows_differing": differing / len(ours), "flip_rate": differing / max(compared, 1)}
