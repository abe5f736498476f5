"""Perturbed answers for counterfactual training: a wrong choice that depends only on the seed and the example id."""

from __future__ import annotations

import hashlib

from scd.data.example import Example


def stable_hash(seed: int, key: str) -> int:
    """A 64-bit hash of (seed, key) that is the same in every process (unlike the salted built-in ``hash``)."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def perturbed_answer(example: Example, seed: int) -> int:
    """Index of a choice other than the gold one, chosen from (seed, example.id) alone.

    It does not depend on the order, batching or sharding of examples; with two choices it is the flipped label.
    """
    others = [index for index in range(len(example.choices)) if index != example.answer]
    return others[stable_hash(seed, example.id) % len(others)]


def other_answer(answer: int, perturbed: int, rationale_for: int) -> int:
    """The answer of a (gold, perturbed) pair that a rationale written for ``rationale_for`` is contrasted with."""
    return perturbed if rationale_for == answer else answer
