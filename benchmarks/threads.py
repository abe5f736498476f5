"""Steps per second of the ToyWorld teacher build when processes share the cores (issue 20, case 15).

Each configuration starts ``processes`` spawned processes together. Each builds the default ToyWorld teacher's
training (world, corpus windows, model and batch from ``conf/dataset/toyworld.yaml`` and ``conf/teacher/toyworld.yaml``),
waits at a barrier so that all of them train at once, runs ``--warmup`` optimizer steps, then times ``--steps`` more
(wall and process CPU time). The configurations:

- ``before``: every process keeps torch's default, a thread per core (what scd did before it set a thread count);
- ``after``: every process gets its share, ``cores // processes`` threads (run.py's default ``threads``).

    python benchmarks/threads.py                  # 1 and 2 processes, before and after, 100 steps after 10
    python benchmarks/threads.py --steps 200      # longer

Prints a Markdown table, then one JSON line. Run it on otherwise idle cores and state the load average beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def teacher_training(threads: int) -> tuple[Any, Any, Any]:
    """The default ToyWorld teacher's model, optimizer and batch stream, with ``threads`` torch threads."""
    import torch
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader

    from scd.models import load_model
    from scd.teacher.prompt import PromptTemplate
    from scd.toyworld.corpus import CorpusConfig
    from scd.toyworld.teacher import TeacherConfig, corpus_windows, demonstration
    from scd.toyworld.tokenizer import build_tokenizer
    from scd.toyworld.world import WorldConfig, load_toyworld

    torch.set_num_threads(threads)
    dataset = OmegaConf.load(ROOT / "conf" / "dataset" / "toyworld.yaml")
    teacher = OmegaConf.load(ROOT / "conf" / "teacher" / "toyworld.yaml")
    world, splits = load_toyworld(WorldConfig(**dataset.task.world))
    prompt = PromptTemplate(template=teacher.template, separator=teacher.separator)
    config = TeacherConfig(**teacher.trained.training)
    tokenizer = build_tokenizer(world, [prompt.prefix([demonstration(splits["train"][0])])])
    windows = corpus_windows(world, splits, CorpusConfig(**teacher.trained.corpus), config, prompt, tokenizer)
    model = load_model("causal", tokenizer, random_init=config.model_init(), seed=config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    return model, optimizer, iter(DataLoader(windows, batch_size=config.batch_size))


def train_steps(threads: int, warmup: int, steps: int, barrier: Any, results: Any) -> None:
    """One process: set up, wait for the others, train ``warmup`` then ``steps`` timed steps (as the build's
    ``CausalLMModule`` does: next-token loss, gradients clipped at 1, AdamW)."""
    import torch

    model, optimizer, batches = teacher_training(threads)

    def step() -> None:
        batch = next(batches)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    barrier.wait()
    for _ in range(warmup):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    results.put({"threads": torch.get_num_threads(), "wall_s": time.perf_counter() - wall,
                 "cpu_s": time.process_time() - cpu})  # fmt: skip


def measure(processes: int, threads: int, warmup: int, steps: int) -> list[dict[str, float]]:
    """Every process's result, with ``processes`` training at once."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=train_steps, args=(threads, warmup, steps, barrier, results))
               for _ in range(processes)]  # fmt: skip
    for worker in workers:
        worker.start()
    measured = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="timed optimizer steps per process")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, load average before: {os.getloadavg()[0]:.2f}")
    print("| setting | processes | threads per process | steps/s per process | steps/s all processes | CPU s per step |")
    print("| --- | --- | --- | --- | --- | --- |")
    summary = {}
    for processes in args.processes:
        for setting, threads in (("before", cores), ("after", max(1, cores // processes))):
            if setting == "after" and threads == cores and f"before_{processes}" in summary:
                summary[f"after_{processes}"] = summary[f"before_{processes}"]  # the same configuration
                print(f"| after | {processes} | {threads} | as before | | |")
                continue
            runs = measure(processes, threads, args.warmup, args.steps)
            per_process = [args.steps / run["wall_s"] for run in runs]
            cpu_per_step = sum(run["cpu_s"] for run in runs) / (args.steps * processes)
            summary[f"{setting}_{processes}"] = round(sum(per_process), 3)
            print(f"| {setting} | {processes} | {threads} | {' / '.join(f'{s:.2f}' for s in per_process)} | "
                  f"{sum(per_process):.2f} | {cpu_per_step:.3f} |")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps({"steps_per_s_all_processes": summary, "steps": args.steps, "cores": cores}))


if __name__ == "__main__":
    main()
