"""The teacher's training text: the world's facts and question-answer demonstrations in the teacher prompt format.

Demonstrations are rendered with the teacher's prompt template (``teacher.template``, the one it is later prompted
with), and their rationales mix four styles: ``support`` (the two-fact chain), ``restate`` ("E can P ." or "the answer is yes ."),
``generic`` ("this is well known .") and ``irrelevant`` (true facts about where E lives and its colour). Styles are
assigned per entity: each entity has a dominant style (shares given by the mix, exactly) that a demonstration uses
with probability ``style_concentration``, else it draws a style from the mix. A global mix would make greedy decoding
pick the most frequent style for every question; per-entity styles make greedy output a realistic mix.

Teacher errors are also per entity: for a share ``teacher_error_rate`` of the entities every demonstration argues
the wrong answer with a false chain (style ``wrong``), so the teacher reproduces its errors under greedy decoding.

The corpus holds every fact but no demonstration for a dev/test (entity, property) pair.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from scd.data.example import Example
from scd.teacher.prompt import PromptTemplate
from scd.toyworld import grammar
from scd.toyworld.gold import gold_rationale
from scd.toyworld.world import World, chooses_properties

STYLES = ("support", "restate", "generic", "irrelevant")
WRONG = "wrong"


class CorpusConfigError(ValueError):
    """A CorpusConfig field is out of range."""


@dataclass(frozen=True)
class CorpusConfig:
    """Rationale styles and errors of the teacher's demonstrations. Defaults follow the prototype's findings."""

    seed: int = 0  # seeds style and error assignment
    mix_support: float = 0.40  # weight of supporting-chain rationales
    mix_restate: float = 0.15  # weight of answer restatements
    mix_generic: float = 0.25  # weight of content-free rationales
    mix_irrelevant: float = 0.20  # weight of true but unrelated facts
    style_concentration: float = 0.7  # chance a demonstration uses its entity's dominant style
    teacher_error_rate: float = 0.2  # share of entities whose demonstrations argue the wrong answer

    def __post_init__(self) -> None:
        for name in ("mix_support", "mix_restate", "mix_generic", "mix_irrelevant"):
            if getattr(self, name) < 0:
                raise CorpusConfigError(f"CorpusConfig.{name} = {getattr(self, name)!r}: must be >= 0")
        if sum(self.mix) <= 0:
            raise CorpusConfigError("CorpusConfig: the mix_* weights must not all be 0")
        if not 0.0 <= self.style_concentration <= 1.0:
            raise CorpusConfigError(
                f"CorpusConfig.style_concentration = {self.style_concentration!r}: must be between 0 and 1"
            )
        if not 0.0 <= self.teacher_error_rate < 1.0:
            raise CorpusConfigError(
                f"CorpusConfig.teacher_error_rate = {self.teacher_error_rate!r}: must be in [0, 1)"
            )

    @property
    def mix(self) -> tuple[float, float, float, float]:
        """Weights in the order of ``STYLES``."""
        return (self.mix_support, self.mix_restate, self.mix_generic, self.mix_irrelevant)


@dataclass(frozen=True)
class Demonstration:
    example: Example
    style: str  # one of STYLES, or WRONG
    rationale: str

    def text(self, prompt: PromptTemplate) -> str:
        return prompt.render(self.example.question, self.example.choices, self.example.answer_text, self.rationale)


@dataclass(frozen=True)
class Corpus:
    facts: list[str]
    demonstrations: list[Demonstration]
    entity_style: dict[str, str]  # dominant style of each entity
    unreliable: frozenset[str]  # entities whose demonstrations argue the wrong answer

    def lines(self, prompt: PromptTemplate) -> list[str]:
        """Every fact and demonstration (rendered with ``prompt``), one line each; training joins them with the
        prompt's separator."""
        return self.facts + [demo.text(prompt) for demo in self.demonstrations]


def _fact_lines(world: World) -> list[str]:
    facts = [grammar.sentence(grammar.isa(e, world.category_of[e])) for e in world.entities]
    facts += [grammar.sentence(grammar.rule(c, p, world.has(c, p))) for c in world.categories for p in world.properties]
    facts += [grammar.sentence(grammar.lives_in(e, world.location_of[e])) for e in world.entities]
    facts += [grammar.sentence(grammar.coloured(e, world.colour_of[e])) for e in world.entities]
    return facts


def _quota_styles(n: int, weights: tuple[float, ...], rng: random.Random) -> list[str]:
    """``n`` styles in shares as close to ``weights`` as counts allow (largest remainder), shuffled."""
    total = sum(weights)
    exact = [n * w / total for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    styles = [style for style, count in zip(STYLES, counts) for _ in range(count)]
    rng.shuffle(styles)
    return styles


def _rationale(world: World, example: Example, style: str, rng: random.Random) -> str:
    entity, prop = example.meta["entity"], example.meta["property"]
    fmt = world.rationale_format
    if style == "support":
        return example.rationale
    if style == "restate":
        if rng.random() < 0.5:
            return grammar.sentence(grammar.answer_is(example.answer_text))
        return grammar.sentence(grammar.can(entity, prop, world.can(entity, prop)))
    if style == "generic":
        return grammar.sentence(rng.choice(grammar.GENERIC_CLAUSES))
    if style == "irrelevant":
        chooses_entities = example.meta["kind"] == "mc" and not chooses_properties(example)
        subject = rng.choice(example.choices) if chooses_entities else entity
        return grammar.sentence(
            grammar.lives_in(subject, world.location_of[subject]), grammar.coloured(subject, world.colour_of[subject])
        )
    if style == WRONG:
        if example.meta["kind"] == "mc":
            wrong = rng.choice([k for k in range(len(example.choices)) if k != example.answer])
            return gold_rationale(example, wrong)
        return grammar.chain(entity, world.category_of[entity], prop, not world.can(entity, prop), fmt)
    raise ValueError(f"unknown rationale style {style!r}")


def _extra_yes_no(world: World, pairs: list[tuple[str, str]], rng: random.Random) -> list[Example]:
    """Yes/no demonstrations for training pairs the train split does not ask, worded at random (no shortcut)."""
    examples = []
    for i, (entity, prop) in enumerate(pairs):
        cue = rng.choice(sorted(grammar.CUE_WORDINGS))
        meta = {"kind": "yesno", "entity": entity, "category": world.category_of[entity], "property": prop}
        answer = 0 if world.can(entity, prop) else 1
        examples.append(
            Example(f"toyworld-corpus-{i:05d}", grammar.yes_no_question(entity, prop, cue), grammar.YES_NO, answer,
                    world.gold_rationale(entity, prop), meta)  # fmt: skip
        )
    return examples


def build_corpus(world: World, splits: dict[str, list[Example]], config: CorpusConfig) -> Corpus:
    """Facts plus one demonstration per train question and per other (entity, property) pair outside dev/test."""
    rng = random.Random(f"toyworld-corpus-{config.seed}")
    held_out = {(ex.meta["entity"], ex.meta["property"]) for split in ("dev", "test") for ex in splits[split]}
    asked = {(ex.meta["entity"], ex.meta["property"]) for ex in splits["train"] if ex.meta["kind"] == "yesno"}
    others = [(e, p) for e in world.entities for p in world.properties if (e, p) not in held_out | asked]
    examples = list(splits["train"]) + _extra_yes_no(world, others, rng)

    entities = list(world.entities)
    entity_style = dict(zip(entities, _quota_styles(len(entities), config.mix, rng)))
    unreliable = frozenset(rng.sample(entities, round(config.teacher_error_rate * len(entities))))
    demonstrations = []
    for example in examples:
        entity = example.meta["entity"]
        if entity in unreliable:
            style = WRONG
        elif rng.random() < config.style_concentration:
            style = entity_style[entity]
        else:
            style = rng.choices(STYLES, weights=config.mix)[0]
        demonstrations.append(Demonstration(example, style, _rationale(world, example, style, rng)))
    return Corpus(_fact_lines(world), demonstrations, entity_style, unreliable)
