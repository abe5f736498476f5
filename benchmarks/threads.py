"""Steps per second of the ToyWorld teacher build when processes share the cores (issue 20, case 15; issue 30).

The workload is the default ToyWorld teacher's training step (world, corpus windows, model and batch from
``conf/dataset/toyworld.yaml`` and ``conf/teacher/toyworld.yaml``): a process builds it, runs ``--warmup`` optimizer
steps, then times ``--steps`` more (wall and process CPU time). Two tables:

1. **Processes alike** (``--processes``): that many processes train together, with torch's default of a thread per
   core (``before``) or their share, ``cores // processes`` threads (``after``, run.py's default ``threads``).
2. **Beside a busy process** (``--neighbours``): one process trains under each thread setting while one neighbour
   keeps a core busy: ``toyworld`` (the same training loop on one thread, as a ``python run.py threads=1`` ToyWorld run
   builds its teacher), ``train`` (a one-thread training loop of a 4-layer d128 transformer), ``matmul`` (a one-thread
   256x256 matrix-product loop) or ``none`` (idle cores). Settings: ``1`` thread; a thread per core with libgomp's
   own spin before a waiting thread sleeps (``spin``: ``GOMP_SPINCOUNT=300000``, what scd ran with before issue 30);
   ``passive`` (``OMP_WAIT_POLICY=PASSIVE``: no spin); ``default`` (what ``import scd`` sets, ``scd.OPENMP_SPIN``);
   and ``spin=N`` for any ``--spincounts N``. Each setting's process is started once (OpenMP reads its variables when
   torch loads) and measured beside each neighbour in turn.

    python benchmarks/threads.py                               # both tables, 100 steps after 10
    python benchmarks/threads.py --processes --neighbours matmul none --settings 1 default --steps 20   # a subset

Prints Markdown tables with the 1-minute load average before and after, then one JSON line. Run it on otherwise idle
cores: another engineer's job is one more neighbour.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import scd

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOURS = ("toyworld", "train", "matmul", "none")
# Thread setting -> (threads, OpenMP environment: a value, or None for unset). "cores" is replaced by the core count.
SETTINGS: dict[str, tuple[str, dict[str, str | None]]] = {
    "1": ("1", {}),
    "spin": ("cores", {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": None}),
    "passive": ("cores", {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "PASSIVE"}),
    # What run.py does by default: its share of the cores no other process keeps busy when it starts (decided again
    # before each measurement, as a run decides at its start), with scd's OpenMP spin.
    "default": ("free", {"GOMP_SPINCOUNT": scd.OPENMP_SPIN, "OMP_WAIT_POLICY": None}),
}


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


def teacher_step(threads: int) -> Any:
    """One optimizer step of the teacher build, as its ``CausalLMModule`` takes it: next-token loss, gradients
    clipped at 1, AdamW."""
    import torch

    model, optimizer, batches = teacher_training(threads)

    def step() -> None:
        batch = next(batches)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step: Any, warmup: int, steps: int) -> dict[str, float]:
    import torch

    for _ in range(warmup):
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return {"threads": torch.get_num_threads(), "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu}  # fmt: skip


def train_steps(threads: int, warmup: int, steps: int, barrier: Any, results: Any) -> None:
    """One of the processes alike: set up, wait for the others, time the steps."""
    step = teacher_step(threads)
    barrier.wait()
    results.put(timed(step, warmup, steps))


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


def neighbour_step(kind: str) -> Any:
    """One step of a one-thread neighbour's loop."""
    import torch

    torch.set_num_threads(1)
    if kind == "toyworld":
        return teacher_step(1)
    if kind == "matmul":
        a, b = torch.randn(256, 256), torch.randn(256, 256)
        return lambda: a @ b
    layer = torch.nn.TransformerEncoderLayer(d_model=128, nhead=4, dim_feedforward=512, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, num_layers=4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = torch.randn(8, 64, 128)

    def step() -> None:
        model(batch).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def neighbour(kind: str, ready: Any, stop: Any) -> None:
    """Keep one core busy with ``kind``'s loop from ``ready`` until ``stop``."""
    step = neighbour_step(kind)
    step()
    ready.set()
    while not stop.is_set():
        step()


def measured_worker(threads: int | None, warmup: int, steps: int, commands: Any, results: Any) -> None:
    """Set up once, then time the steps at each command (None ends it). ``threads`` None: run.py's default, chosen
    before each measurement from the cores other processes leave free."""
    import torch

    from scd.cli import busy_cores

    cores = len(os.sched_getaffinity(0))
    step = teacher_step(threads or cores)
    results.put("ready")
    while commands.get() is not None:
        if threads is None:
            torch.set_num_threads(max(1, cores - busy_cores()))
        results.put(timed(step, warmup, steps))


@contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: unset) for the block: a spawned process starts with it."""
    def apply(settings: dict[str, str | None]) -> None:
        for name, value in settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    saved = {name: os.environ.get(name) for name in values}
    apply(values)
    try:
        yield
    finally:
        apply(saved)


def beside_neighbours(settings: list[str], neighbours: list[str], cores: int, warmup: int, steps: int
                      ) -> Iterator[tuple[str, dict[str, dict[str, float]]]]:  # fmt: skip
    """Each neighbour with the steps/s and CPU s per step of each setting beside it (a process per setting, set up
    once), as measured."""
    context = multiprocessing.get_context("spawn")
    workers = {}
    for name in settings:
        threads, env = SETTINGS[name] if name in SETTINGS else ("cores", {"GOMP_SPINCOUNT": name.split("=")[1],
                                                                           "OMP_WAIT_POLICY": None})  # fmt: skip
        commands, results = context.Queue(), context.Queue()
        count = cores if threads == "cores" else None if threads == "free" else int(threads)
        with environment(env):
            process = context.Process(target=measured_worker, args=(count, warmup, steps, commands, results))
            process.start()
        workers[name] = (process, commands, results)
    for _, _, results in workers.values():
        results.get()  # every setting is set up before any neighbour starts
    for kind in neighbours:
        ready, stop = context.Event(), context.Event()
        busy = None
        if kind != "none":
            busy = context.Process(target=neighbour, args=(kind, ready, stop))
            busy.start()
            ready.wait()
        row = {}
        for name, (_, commands, results) in workers.items():
            commands.put("measure")
            run = results.get()
            row[name] = {"steps_per_s": round(steps / run["wall_s"], 2),
                         "cpu_s_per_step": round(run["cpu_s"] / steps, 3), "threads": run["threads"]}
        if busy is not None:
            stop.set()
            busy.join()
        yield kind, row
    for process, commands, _ in workers.values():
        commands.put(None)
        process.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="timed optimizer steps per process")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2], help="the processes-alike table's "
                        "process counts (none: skip that table)")
    parser.add_argument("--neighbours", nargs="*", default=list(NEIGHBOURS), choices=NEIGHBOURS,
                        help="the beside-a-busy-process table's neighbours (none given: skip that table)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                        help="thread settings beside the neighbours")
    parser.add_argument("--spincounts", type=int, nargs="*", default=[], help="also a thread per core with "
                        "GOMP_SPINCOUNT=N beside the neighbours")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, load average before: {os.getloadavg()[0]:.2f}")
    summary: dict[str, float] = {}
    if args.processes:
        print("| setting | processes | threads per process | steps/s per process | steps/s all processes | "
              "CPU s per step |\n| --- | --- | --- | --- | --- | --- |")  # fmt: skip
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
    if args.neighbours:
        settings = [*args.settings, *(f"spin={count}" for count in args.spincounts)]
        print(f"\nload average before the neighbours table: {os.getloadavg()[0]:.2f}")
        names = {"1": "1 thread", "spin": f"{cores} threads, libgomp spin (before)", "passive":
                 f"{cores} threads, OMP_WAIT_POLICY=PASSIVE", "default": "scd default (its share of the free "
                 f"cores, GOMP_SPINCOUNT={scd.OPENMP_SPIN})"}  # fmt: skip
        print("| neighbour | " + " | ".join(names.get(s, f"{cores} threads, GOMP_SPINCOUNT={s[5:]}")
                                            for s in settings) + " | load average |")  # fmt: skip
        print("| --- " * (len(settings) + 2) + "|", flush=True)
        beside = {}
        for kind, row in beside_neighbours(settings, args.neighbours, cores, args.warmup, args.steps):
            beside[kind] = row
            print(f"| {kind} | " + " | ".join(f"{row[s]['steps_per_s']:.2f} ({row[s]['cpu_s_per_step']:.2f} CPU s, "
                                              f"{row[s]['threads']} thr.)" for s in settings)
                  + f" | {os.getloadavg()[0]:.2f} |", flush=True)  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(json.dumps({"steps_per_s_all_processes": summary, "beside": beside if args.neighbours else {},
                      "steps": args.steps, "cores": cores}))


if __name__ == "__main__":
    main()
