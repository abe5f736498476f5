"""One prepared GPU check: the runs that need a GPU, each in its own process, summed up as a Markdown table and, as the
last line, one JSON object.

    python benchmarks/gpu_check.py                    # every check; about an hour on one H100 (ToyWorld is most of it)
    python benchmarks/gpu_check.py --only decoding lora_step
    python benchmarks/gpu_check.py --lora-step t5-3b  # one LoRA step alone (what the lora_step check runs per size)

The checks:
- ``decoding``: ``benchmarks/run.py`` at the 1B size in bfloat16: scd's contrastive decoding against HF guidance (CFG)
  and HF greedy ``generate``, with each method's peak GPU memory;
- ``toyworld``: ``python run.py trainer=gpu``, the default ToyWorld run (teacher trained in code, student, evaluation);
- ``smoke_device_map``: ``python run.py experiment=smoke teacher.device_map=auto trainer=gpu``;
- ``smoke_ddp``: the smoke run with DDP on two GPUs (skipped with fewer);
- ``lora_step``: one LoRA (r=16) training step of a random-init T5 in bfloat16, from T5-11B's size down to the first
  that fits, with its step time and peak memory.
Without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
# T5 sizes from the largest down (the public checkpoints' dimensions), for the LoRA step.
T5_SIZES: dict[str, dict[str, int]] = {
    "t5-11b": dict(d_model=1024, d_ff=65536, num_heads=128, d_kv=128, num_layers=24),
    "t5-3b": dict(d_model=1024, d_ff=16384, num_heads=32, d_kv=128, num_layers=24),
    "t5-large": dict(d_model=1024, d_ff=4096, num_heads=16, d_kv=64, num_layers=24),
    "t5-base": dict(d_model=768, d_ff=3072, num_heads=12, d_kv=64, num_layers=12),
}
# run.py overrides of each pipeline check (besides its run directory and cache).
RUNS: dict[str, list[str]] = {
    "toyworld": ["trainer=gpu"],
    "smoke_device_map": ["experiment=smoke", "teacher.device_map=auto", "trainer=gpu"],
    "smoke_ddp": ["experiment=smoke", "trainer=ddp", "trainer.devices=2"],
}
CHECKS = ("decoding", "toyworld", "smoke_device_map", "smoke_ddp", "lora_step")
# Metrics of a run's metrics.json shown in the table.
RUN_FIGURES = ("student/accuracy", "student/counterfactual_consistency", "time/teacher_s", "time/student_s",
               "time/evaluate_s")


def lora_step(size: str, batch_size: int = 8, length: int = 256) -> dict[str, Any]:
    """One forward and backward pass and optimizer step of a LoRA (r=16) T5 of ``size`` in bfloat16 on the GPU."""
    from transformers import T5Config, T5ForConditionalGeneration

    from scd.config import LoraConfig
    from scd.student.lora import apply_lora, trainable_parameters

    config = T5Config(vocab_size=32128, num_decoder_layers=T5_SIZES[size]["num_layers"], **T5_SIZES[size])
    torch.cuda.reset_peak_memory_stats()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = T5ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model = apply_lora(model, LoraConfig(r=16), "seq2seq")
    trainable, total = trainable_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(3, 32000, (batch_size, length), device="cuda")
    times = []
    for _ in range(3):  # the first step includes the allocator's and kernels' warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids[:, : length // 4]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"size": size, "trainable": trainable, "parameters": total, "step_s": round(min(times[1:]), 3),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20), "batch": f"{batch_size}x{length}"}


def run_process(command: list[str], timeout: int) -> tuple[int, str, float]:
    """(exit status, output, seconds) of ``command`` run from the repository root."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "WANDB_MODE": "offline"})  # fmt: skip
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        status, output = 124, f"timed out after {timeout} s: {expired.stdout or ''}"
    return status, output, round(time.perf_counter() - start, 1)


def last_line(output: str, status: int) -> str:
    """What a failed check reports: the last line of its output (scd's one error line), or its exit status."""
    lines = output.strip().splitlines()
    return lines[-1] if lines else f"exit status {status}"


def check_decoding(timeout: int) -> dict[str, Any]:
    command = [sys.executable, "benchmarks/run.py", "--device", "cuda", "--dtype", "bfloat16", "--size", "1b",
               "--skip", "loop", "uncached", "train", "--repeats", "2"]
    status, output, seconds = run_process(command, timeout)
    result: dict[str, Any] = {"status": "ok" if status == 0 else "failed", "seconds": seconds}
    if status == 0:
        result["ratios"] = json.loads(output.strip().splitlines()[-1])
        # The 1B model's table (run.py prints the tiny model's first).
        result["table"] = "\n".join(line for line in output.split("### 1b")[-1].splitlines() if line.startswith("|"))
    else:
        result["error"] = last_line(output, status)
    return result


def check_run(name: str, work: Path, timeout: int) -> dict[str, Any]:
    run_dir = work / name
    command = [sys.executable, "run.py", *RUNS[name], f"hydra.run.dir={run_dir}", f"paths.cache_dir={work / 'cache'}",
               "logger=csv"]
    status, output, seconds = run_process(command, timeout)
    result: dict[str, Any] = {"status": "ok" if status == 0 else "failed", "seconds": seconds,
                              "command": "python run.py " + " ".join(RUNS[name])}  # fmt: skip
    metrics_file = run_dir / "metrics.json"
    if status == 0 and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        result["metrics"] = {key: metrics[key] for key in RUN_FIGURES if key in metrics}
    else:
        result["error"] = last_line(output, status)
    return result


def check_lora_step(timeout: int) -> dict[str, Any]:
    """The largest T5 size whose LoRA step fits, each tried in a fresh process (an out-of-memory leaves no residue)."""
    tried = []
    for size in T5_SIZES:
        status, output, seconds = run_process([sys.executable, __file__, "--lora-step", size], timeout)
        if status == 0:
            return {"status": "ok", "seconds": seconds, **json.loads(output.strip().splitlines()[-1]),
                    "did_not_fit": tried}
        tried.append(size)
        if "OutOfMemoryError" not in output and "out of memory" not in output:
            return {"status": "failed", "seconds": seconds, "size": size, "error": last_line(output, status)}
    return {"status": "failed", "error": f"no size fits: {tried}"}


def summary(device: str, results: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of the checks: status, seconds and each check's figures."""
    lines = [f"GPU check on {device}", "", "| check | status | seconds | figures |", "| --- | --- | --- | --- |"]
    for name, r in results.items():
        if "ratios" in r:
            figures = ", ".join(f"{k} {v}" for k, v in r["ratios"].items() if v is not None)
        elif "metrics" in r:
            figures = ", ".join(f"{k} {v:.3g}" for k, v in r["metrics"].items())
        elif "step_s" in r:
            figures = (f"{r['size']}: {r['trainable']:,} trainable of {r['parameters']:,}, {r['step_s']} s/step "
                       f"({r['batch']}), peak {r['peak_gpu_mb']:,} MB")
        else:
            figures = r.get("error", r.get("reason", ""))
        lines.append(f"| {name} | {r['status']} | {r.get('seconds', '-')} | {figures} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS))
    parser.add_argument("--timeout", type=int, default=3600, help="seconds each check may run")
    parser.add_argument("--lora-step", choices=list(T5_SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}); nothing to check")
        return
    if args.lora_step:
        print(json.dumps(lora_step(args.lora_step)))
        return
    device = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name()}"
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="scd-gpu-check-") as work:
        for name in args.only:
            print(f"gpu_check: {name} ...", flush=True)
            if name == "decoding":
                results[name] = check_decoding(args.timeout)
            elif name == "lora_step":
                results[name] = check_lora_step(args.timeout)
            elif name == "smoke_ddp" and torch.cuda.device_count() < 2:
                results[name] = {"status": "skipped", "reason": f"{torch.cuda.device_count()} GPU"}
            else:
                results[name] = check_run(name, Path(work), args.timeout)
    if "table" in results.get("decoding", {}):
        print("\nDecoding at the 1B size, bfloat16:\n\n" + results["decoding"].pop("table"))
    print("\n" + summary(device, results))
    print(json.dumps({"device": device, "torch": torch.__version__, "checks": results}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # scd, for the LoRA step
    main()
