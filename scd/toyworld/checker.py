"""Exact judgements of a rationale against the world: ToyWorld's stand-in for the paper's human ratings.

``judge`` parses a rationale with ToyWorld's grammar (see ``grammar``), checks every stated fact against the world
and reports one label:

- ``malformed``: empty, or a sentence outside the grammar (unknown words, truncated sentences, missing final ".");
- ``contradicting``: states at least one false fact (a wrong category, rule, location, colour or answer);
- ``supporting``: a complete two-fact chain (E is a C; every/no C can P) about this question's entity and property,
  all true, so it entails the gold answer;
- ``restatement``: asserts an answer ("E can P .", "the answer is yes .") without a complete chain;
- ``partial``: true facts on the question's path (the entity's category, or the rule about its category and the
  property) that do not reach an answer;
- ``irrelevant``: only true facts off the path (locations, colours, other entities or properties);
- ``generic``: only content-free sentences ("this is well known .").

Ratings of the paper: supports-answer is ``Judgement.supports(k)``, new-info is ``new_info``, grammaticality is
``grammatical``. ``entailed`` is the answer the stated sentences entail taken as premises, true or not, which is
what consistency metrics need (a counterfactual rationale entails the perturbed answer while contradicting the world).
"""

from __future__ import annotations

from dataclasses import dataclass

from scd.data.example import Example
from scd.toyworld import grammar
from scd.toyworld.world import World, chooses_properties

LABELS = ("supporting", "restatement", "partial", "irrelevant", "generic", "contradicting", "malformed")


@dataclass(frozen=True)
class Clause:
    """One parsed clause. ``kind``: isa, rule, can, lives, colour, answer or generic."""

    kind: str
    subject: str = ""
    obj: str = ""
    positive: bool = True


@dataclass(frozen=True)
class Judgement:
    label: str
    entailed: int | None  # choice the sentences entail as premises (chain, restatement or "the answer is"), if unique
    chain_answer: int | None  # choice entailed by complete two-fact chains alone, if unique
    grammatical: bool
    new_info: bool  # states a fact beyond asserting the answer (a category, rule, location or colour)
    n_false: int  # number of false facts stated

    def supports(self, choice: int) -> bool:
        """A complete, true chain for ``choice``: the exact version of "the rationale supports the answer"."""
        return self.label == "supporting" and self.chain_answer == choice


def parse_rationale(world: World, text: str, choices: tuple[str, ...]) -> list[Clause] | None:
    """The clauses of ``text``, or None when it is not a sequence of grammatical sentences ending in "."."""
    words = text.split()
    if not words or words[-1] != ".":
        return None
    body = " ".join(words[:-1])
    clauses: list[Clause] = []
    for sentence in body.split(" . "):
        sentence = _without_marker(sentence)
        for clause_text in sentence.split(" , and "):
            clause = _parse_clause(world, clause_text.split(), choices)
            if clause is None:
                return None
            clauses.append(clause)
    return clauses


def _without_marker(sentence: str) -> str:
    """A sentence without the choice marker ("( 1 )") that may start it in a multiple-choice rationale."""
    t = sentence.split()
    if len(t) > 3 and t[0] == "(" and t[1] in grammar.MARKERS and t[2] == ")":
        return " ".join(t[3:])
    return sentence


def _parse_clause(world: World, t: list[str], choices: tuple[str, ...]) -> Clause | None:
    entities, categories, properties = world.category_of, world.members, world.properties
    if " ".join(t) in grammar.GENERIC_CLAUSES:
        return Clause("generic")
    if len(t) == 4 and t[1:3] == ["is", "a"] and t[0] in entities and t[3] in categories:
        return Clause("isa", t[0], t[3])
    if len(t) == 4 and t[0] in ("every", "no") and t[1] in categories and t[2] == "can" and t[3] in properties:
        return Clause("rule", t[1], t[3], t[0] == "every")
    if len(t) == 3 and t[0] in entities and t[1] in ("can", "cannot") and t[2] in properties:
        return Clause("can", t[0], t[2], t[1] == "can")
    if len(t) == 5 and t[0] in entities and t[1:4] == ["lives", "in", "the"] and t[4] in world.locations:
        return Clause("lives", t[0], t[4])
    if len(t) == 3 and t[0] in entities and t[1] == "is" and t[2] in world.colours:
        return Clause("colour", t[0], t[2])
    if len(t) == 4 and t[:3] == ["the", "answer", "is"] and t[3] in choices:
        return Clause("answer", "", t[3])
    return None


def _is_true(world: World, clause: Clause, example: Example) -> bool:
    if clause.kind == "isa":
        return world.category_of[clause.subject] == clause.obj
    if clause.kind == "rule":
        return world.has(clause.subject, clause.obj) == clause.positive
    if clause.kind == "can":
        return world.can(clause.subject, clause.obj) == clause.positive
    if clause.kind == "lives":
        return world.location_of[clause.subject] == clause.obj
    if clause.kind == "colour":
        return world.colour_of[clause.subject] == clause.obj
    if clause.kind == "answer":
        return example.choices.index(clause.obj) == example.answer
    return True  # generic clauses claim nothing


def _claims(example: Example) -> list[tuple[str, str]]:
    """The (entity, property) pair each choice stands for: the one pair of a yes/no question, each entity of a
    multiple-choice question over entities with its property, or its entity with each property of one over
    properties."""
    meta = example.meta
    if meta["kind"] != "mc":
        return [(meta["entity"], meta["property"])]
    if chooses_properties(example):
        return [(meta["entity"], prop) for prop in example.choices]
    return [(entity, meta["property"]) for entity in example.choices]


def _verdicts(clauses: list[Clause], entity: str, prop: str, chains_only: bool) -> set[bool]:
    """What the clauses, taken as premises, say about "``entity`` can ``prop``"."""
    stated_categories = {c.obj for c in clauses if c.kind == "isa" and c.subject == entity}
    verdicts = {
        c.positive for c in clauses if c.kind == "rule" and c.obj == prop and c.subject in stated_categories
    }
    if not chains_only:
        verdicts |= {c.positive for c in clauses if c.kind == "can" and c.subject == entity and c.obj == prop}
    return verdicts


def _entailed(clauses: list[Clause], example: Example, chains_only: bool) -> int | None:
    candidates: set[int] = set()
    if example.meta["kind"] == "mc":
        verdicts = [_verdicts(clauses, e, p, chains_only) for e, p in _claims(example)]
        if any(len(v) > 1 for v in verdicts):
            return None  # the premises contradict each other
        positive = {k for k, v in enumerate(verdicts) if True in v}
        ruled_out = {k for k, v in enumerate(verdicts) if False in v}
        candidates |= positive
        if not positive and len(ruled_out) == len(example.choices) - 1:
            candidates |= set(range(len(example.choices))) - ruled_out
    else:
        verdicts = _verdicts(clauses, *_claims(example)[0], chains_only)
        candidates |= {example.choices.index(grammar.YES if v else grammar.NO) for v in verdicts}
    if not chains_only:
        candidates |= {example.choices.index(c.obj) for c in clauses if c.kind == "answer"}
    return candidates.pop() if len(candidates) == 1 else None


def _on_path(world: World, clause: Clause, example: Example) -> bool:
    """A fact on the question's path: a question entity's category, or the rule of its category for a question
    property."""
    claims = _claims(example)
    if clause.kind == "isa":
        return clause.subject in {e for e, _ in claims}
    if clause.kind == "rule":
        return (clause.subject, clause.obj) in {(world.category_of[e], p) for e, p in claims}
    return False


def judge(world: World, example: Example, rationale: str) -> Judgement:
    """Classify ``rationale`` as written for ``example`` (a ToyWorld example: meta has kind, entity, property)."""
    clauses = parse_rationale(world, rationale, example.choices)
    if not clauses:
        return Judgement("malformed", None, None, grammatical=False, new_info=False, n_false=0)
    n_false = sum(not _is_true(world, c, example) for c in clauses)
    entailed = _entailed(clauses, example, chains_only=False)
    chain_answer = _entailed(clauses, example, chains_only=True)
    facts = [c for c in clauses if c.kind not in ("generic", "answer")]
    restating = set(_claims(example))
    new_info = any(c.kind != "can" or (c.subject, c.obj) not in restating for c in facts)
    if n_false:
        label = "contradicting"
    elif chain_answer is not None:
        label = "supporting"
    elif entailed is not None:
        label = "restatement"
    elif any(_on_path(world, c, example) for c in facts):
        label = "partial"
    elif facts:
        label = "irrelevant"
    else:
        label = "generic"
    return Judgement(label, entailed, chain_answer, grammatical=True, new_info=new_info, n_false=n_false)
