"""Benchmarks: the teacher's contrastive decoding against its baselines, and the student's training step.

    python benchmarks/run.py                 # CPU: tiny and small (58M) models, N=64, 64 new tokens, 2 runs each
    python benchmarks/run.py --quick         # a sanity run in seconds: tiny model, 8 examples, 16 new tokens,
                                             # in this process (its memory columns are not per method)
    python benchmarks/run.py --device cuda --dtype bfloat16 --size 1b

Prints a Markdown table per model size, then, as its last line, one JSON object of ratios taken on ``--size``:
``cd_vs_loop`` and ``cd_vs_hf_cfg`` (speed-ups of the project's contrastive decoding over the per-example loop and
over HF guidance), ``cd_cost_vs_greedy`` (its time over plain batched greedy ``generate``), ``train_vs_ref`` (the
student step's speed-up, ``benchmarks/student_step.py``). Times are the best of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from typing import Any

import torch

from student_step import measure_train_vs_ref
from teacher_decoding import METHODS, Job, compare_tokens, in_subprocess, measure, run_job
from workload import build_tokenizer, few_shot_workload

LAM = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model, 8 examples, 16 new tokens, one run each, "
                        "all in this process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--size", default="small", choices=["tiny", "small", "1b"], help="model the ratios use")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best is reported")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["loop", "hf_cfg", "hf_greedy", "uncached", "train"],
                        help="leave measurements out (their ratios come out as null)")
    args = parser.parse_args()
    if args.quick:
        args.size, args.examples, args.max_new_tokens, args.repeats = "tiny", 8, 16, 1
    return args


def measure_size(args: argparse.Namespace, size: str, tokenizer_json: str, workload: Any) -> dict[str, dict[str, Any]]:
    results = {}
    for key, method in METHODS.items():
        if method.kind in args.skip or ("uncached" in args.skip and key.startswith("scd_no_prefix")):
            continue
        job = Job(method, size, args.device, args.dtype, args.threads, tokenizer_json, workload, LAM,
                  args.max_new_tokens, args.repeats)
        # A process per measurement keeps peaks and thread pools apart; --quick spares the start-ups.
        results[key] = run_job(job) if args.quick else measure(job)
        print(f"  [{size}] {method.label}: " + ", ".join(f"{t:.2f}s" for t in results[key]["times"]), flush=True)
    return results


def table(results: dict[str, dict[str, Any]], max_new_tokens: int, on_gpu: bool) -> str:
    reference = results["scd"]["tokens"]
    head = "| method | best s | median s | CPU s (best run) | tokens/s | peak RSS MB | RSS over loaded MB |"
    head += " GPU peak MB |" if on_gpu else ""
    head += " rows at max length | rows differing from scd | flip rate |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for key, r in results.items():
        best = min(r["times"])
        cpu = r["cpu_times"][r["times"].index(best)]
        generated = sum(map(len, r["tokens"]))
        full = sum(len(t) == max_new_tokens for t in r["tokens"]) / len(r["tokens"])
        row = (f"| {METHODS[key].label} | {best:.2f} | {statistics.median(r['times']):.2f} | {cpu:.2f} | "
               f"{generated / best:.0f} | {r['rss_peak_mb']:.0f} | {r['rss_peak_mb'] - r['rss_loaded_mb']:.0f} |")
        row += f" {r['gpu_peak_mb']:.0f} |" if on_gpu else ""
        if key in ("scd", "hf_greedy"):
            row += f" {full:.0%} | - | - |"
        else:
            diff = compare_tokens(reference, r["tokens"])
            row += f" {full:.0%} | {diff['rows_differing']:.1%} | {diff['flip_rate']:.2%} |"
        lines.append(row)
    return "\n".join(lines)


def ratios(results: dict[str, dict[str, Any]], train: dict[str, float] | None, clock: str = "times"
           ) -> dict[str, float | None]:
    """The ratios, from the best wall times (``clock="times"``) or the best process CPU times (``"cpu_times"``)."""
    best = {key: min(r[clock]) for key, r in results.items()}

    def over(key: str) -> float | None:
        return round(best[key] / best["scd"], 3) if key in best else None

    out = {
        "cd_vs_loop": over("loop"),
        "cd_vs_hf_cfg": over("hf_cfg"),
        "cd_cost_vs_greedy": round(best["scd"] / best["hf_greedy"], 3) if "hf_greedy" in best else None,
        "train_vs_ref": round(train["speedup"], 3) if train else None,
        # What each of the project's two choices buys on this machine (> 1: the default is faster).
        "shared_prefix_speedup": over("scd_no_prefix"),
        "merged_vs_separate": over("scd_separate"),
    }
    for key in ("loop", "hf_cfg", "scd_no_prefix"):
        if key in results:
            flips = compare_tokens(results["scd"]["tokens"], results[key]["tokens"])["flip_rate"]
            out[f"flip_rate_vs_{key}"] = round(flips, 5)
    return out


def main() -> None:
    args = parse_args()
    tokenizer = build_tokenizer()
    workload = few_shot_workload(tokenizer, args.examples)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {args.threads}, device {args.device} {args.dtype}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print(f"workload: N={args.examples}, 7 demonstrations, prompt {workload.mean_prompt_tokens:.0f} tokens on average "
          f"({len(workload.prefix_ids)} shared), vocabulary {len(tokenizer)}, up to {args.max_new_tokens} new tokens, "
          f"lam={LAM}, separator {workload.separator!r} (random models never produce it), best of {args.repeats} runs",
          flush=True)
    sizes = list(dict.fromkeys(["tiny", args.size]))
    by_size = {}
    for size in sizes:
        by_size[size] = measure_size(args, size, tokenizer.backend_tokenizer.to_str(), workload)
    for size, results in by_size.items():
        params = next(iter(results.values()))["parameters"]
        print(f"\n### {size} model ({params / 1e6:.1f}M parameters)\n")
        print(table(results, args.max_new_tokens, args.device.startswith("cuda")))
    train = None
    if "train" not in args.skip:
        if args.quick:
            train = measure_train_vs_ref(device=args.device, n_questions=16, steps=5, warmup=1)
        else:
            train = in_subprocess(measure_train_vs_ref, device=args.device)
        print(f"\nstudent step: {json.dumps(train)}")
    if args.threads == 1:
        # One thread: CPU time is the work done, which other processes on shared cores disturb less than wall time.
        print(f"ratios by CPU time: {json.dumps(ratios(by_size[args.size], train, 'cpu_times'))}")
    print(json.dumps(ratios(by_size[args.size], train)))


if __name__ == "__main__":
    main()
