"""Perturbed answers: deterministic per (seed, id), never gold, flipped for two-choice data."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from scd.data.example import Example
from scd.data.perturb import perturbed_answer

FIVE = [Example(f"q{i}", f"Question {i}?", ("a", "b", "c", "d", "e"), i % 5) for i in range(40)]


def test_never_the_gold_answer():
    for seed in range(5):
        for example in FIVE:
            perturbed = perturbed_answer(example, seed)
            assert perturbed != example.answer and 0 <= perturbed < 5


def test_depends_on_seed_and_id_only():
    first = [perturbed_answer(example, 7) for example in FIVE]
    shuffled = FIVE[:]
    random.Random(0).shuffle(shuffled)
    by_id = {example.id: perturbed_answer(example, 7) for example in shuffled}
    assert [by_id[example.id] for example in FIVE] == first
    # The same id with other text gets the same perturbation: only (seed, id) matter.
    renamed = Example("q3", "Another question?", ("v", "w", "x", "y", "z"), FIVE[3].answer)
    assert perturbed_answer(renamed, 7) == first[3]


def test_stable_across_processes():
    # Python's hash() of a str is salted per process; the perturbation must not be.
    code = ("from scd.data.example import Example; from scd.data.perturb import perturbed_answer; "
            "print([perturbed_answer(Example(f'q{i}', 'Q', tuple('abcde'), i % 5), 7) for i in range(40)])")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parents[1], env={"PYTHONHASHSEED": str(salt)}).stdout
               for salt in (1, 2)}
    assert outputs == {f"{[perturbed_answer(example, 7) for example in FIVE]}\n"}


def test_differs_across_seeds_and_covers_the_choices():
    by_seed = [[perturbed_answer(example, seed) for example in FIVE] for seed in (0, 1)]
    assert by_seed[0] != by_seed[1]
    assert {perturbed_answer(FIVE[0], seed) for seed in range(50)} == {1, 2, 3, 4}


def test_two_choices_flip_the_label():
    for seed in range(3):
        for i in range(10):
            assert perturbed_answer(Example(f"s{i}", "Claim.", ("true", "false"), i % 2), seed) == 1 - i % 2
