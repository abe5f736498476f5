"""The gold teacher: ToyWorld's own supporting chain for any answer, a control arm and the capability ceiling.

For the gold answer it is the world's true two-fact chain; for another answer (the perturbed answer of the
counterfactual sets) it is the chain that would support that answer: for a yes/no question the rule with the other
polarity ("no C can P" for "yes" turned "no"), for a multiple-choice question over entities every choice's chain with
"every" only for the chosen entity's category (``grammar.choice_chains``), over properties the entity's chain with
"every" for the chosen property. Such a chain states false rules, as a counterfactual
rationale must, and the checker reads it as entailing the answer it was written for.

Everything it needs is in a ToyWorld example's meta (entity, category, property, the choices' categories, the
world's rationale format). ``decoding=gold`` writes these chains in place of the teacher's (``GoldChain``).
"""

from __future__ import annotations

from dataclasses import dataclass

from scd.data.example import Example
from scd.teacher.jobs import RationaleJob
from scd.teacher.strategies import WrittenRationales
from scd.toyworld import grammar
from scd.toyworld.world import chooses_properties


def gold_rationale(example: Example, choice: int) -> str:
    """The chain that supports ``choice`` as the answer to the ToyWorld ``example``, in its world's format."""
    meta = example.meta
    fmt = meta.get("rationale_format", "rule_first")
    if chooses_properties(example):
        return grammar.chain(meta["entity"], meta["category"], example.choices[choice], True, fmt)
    if meta["kind"] == "mc":
        return grammar.choice_chains(example.choices, meta["choice_categories"], meta["property"], choice, fmt)
    positive = example.choices[choice] == grammar.YES
    return grammar.chain(meta["entity"], meta["category"], meta["property"], positive, fmt)


@dataclass(frozen=True)
class GoldChain(WrittenRationales):
    """``decoding=gold``: every rationale is the world's chain for the answer it is written for."""

    def rationale(self, job: RationaleJob) -> str:
        if "kind" not in job.example.meta:
            raise ValueError("decoding=gold writes ToyWorld's gold chains: use it with dataset=toyworld")
        return gold_rationale(job.example, job.rationale_for)
