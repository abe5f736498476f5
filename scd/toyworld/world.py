"""ToyWorld: a seeded synthetic world of made-up entities, and two-hop questions about it with exact answers.

Facts: every entity is a member of one category ("E is a C"); every category has or lacks each property ("every C
can P" / "no C can P"); entities also live somewhere and have a colour (true facts that no question needs, for
irrelevant rationales). A question asks whether entity E can do P (yes/no) or, as multiple choice, which of three
entities can do P (its rationale a chain for every choice) or which of three properties E can do (its rationale the
one chain for the property E's category has). Answering needs two hops, E -> C -> P. No (entity, property) pair that
a dev/test question mentions (a multiple-choice question mentions one per choice) appears in a training question,
though every entity does.

A shortcut is planted in the wording of yes/no questions: "do you think E can P ?" (cue "think") goes with "yes" and
"is it true that E can P ?" (cue "true") with "no" in a share ``shortcut_strength`` of training questions and
``eval_shortcut_strength`` of dev/test questions, per answer class and exactly (counts are rounded, not sampled).
Multiple-choice questions carry no cue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from scd.data.example import Example
from scd.toyworld import grammar
from scd.toyworld.grammar import RATIONALE_FORMATS, YES_NO, RationaleFormat

SPLITS = ("train", "dev", "test")
_CUE_ANSWER_ITEMS = tuple(grammar.CUE_ANSWER.items())
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass
class _Quota:
    """How many pairs of each kind a split still needs."""

    yes: int
    no: int
    mc: int

    @classmethod
    def for_split(cls, size: int, mc_fraction: float) -> _Quota:
        mc = round(size * mc_fraction)
        yes = (size - mc) // 2
        return cls(yes=yes, no=size - mc - yes, mc=mc)

    def total(self) -> int:
        return self.yes + self.no + self.mc


class WorldConfigError(ValueError):
    """A WorldConfig field is out of range."""


@dataclass(frozen=True)
class WorldConfig:
    """Size, question mix and shortcut of a ToyWorld. Defaults: the run.py default world (fits the 10-minute budget)."""

    seed: int = 0  # seeds names, facts, splits and cues
    n_categories: int = 10  # number of categories
    entities_per_category: int = 10  # entities in each category
    n_properties: int = 24  # properties a category can have (at most 32)
    n_locations: int = 8  # locations for distractor facts (at most 12)
    n_colours: int = 8  # colours for distractor facts (at most 12)
    property_rate: float = 0.5  # share of categories that have each property (exact, at least one, not all)
    n_train: int = 1200  # training questions
    n_dev: int = 200  # dev questions (held-out entity-property pairs)
    n_test: int = 400  # test questions (held-out entity-property pairs)
    mc_fraction: float = 0.2  # share of each split that is multiple choice; the rest is yes/no
    n_mc_choices: int = 3  # choices of a multiple-choice question, exactly one correct
    mc_choices: str = "entities"  # what multiple-choice questions choose between: entities or properties
    shortcut_strength: float = 0.9  # train: share of yes/no questions whose wording cue agrees with the answer
    eval_shortcut_strength: float = 0.5  # dev/test: the same share (0.5: the cue carries no information)
    rationale_format: str = "rule_first"  # gold rationale order: rule_first or entity_first (a negative control)

    def __post_init__(self) -> None:
        def require(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise WorldConfigError(f"WorldConfig.{name} = {getattr(self, name)!r}: must be {rule}")

        require(self.n_categories >= 2, "n_categories", ">= 2")
        require(self.entities_per_category >= 1, "entities_per_category", ">= 1")
        require(1 <= self.n_properties <= len(grammar.PROPERTY_WORDS), "n_properties",
                f"between 1 and {len(grammar.PROPERTY_WORDS)}")  # fmt: skip
        require(1 <= self.n_locations <= len(grammar.LOCATION_WORDS), "n_locations",
                f"between 1 and {len(grammar.LOCATION_WORDS)}")  # fmt: skip
        require(1 <= self.n_colours <= len(grammar.COLOUR_WORDS), "n_colours",
                f"between 1 and {len(grammar.COLOUR_WORDS)}")  # fmt: skip
        require(0.0 < self.property_rate < 1.0, "property_rate", "strictly between 0 and 1")
        require(self.n_train >= 1, "n_train", ">= 1")
        require(self.n_dev >= 1, "n_dev", ">= 1")
        require(self.n_test >= 1, "n_test", ">= 1")
        require(0.0 <= self.mc_fraction <= 1.0, "mc_fraction", "between 0 and 1")
        require(self.mc_choices in grammar.MC_CHOICES, "mc_choices", f"one of {grammar.MC_CHOICES}")
        if self.mc_choices == "entities":
            require(2 <= self.n_mc_choices <= self.n_categories - self.categories_per_property + 1, "n_mc_choices",
                    "between 2 and 1 + the categories that lack a property (wrong choices come from distinct "
                    "categories)")
        else:
            require(2 <= self.n_mc_choices <= 1 + self.n_properties // 2, "n_mc_choices",
                    "between 2 and 1 + half the properties (wrong choices are properties the category lacks)")
        require(0.0 <= self.shortcut_strength <= 1.0, "shortcut_strength", "between 0 and 1")
        require(0.0 <= self.eval_shortcut_strength <= 1.0, "eval_shortcut_strength", "between 0 and 1")
        require(self.rationale_format in RATIONALE_FORMATS, "rationale_format", f"one of {RATIONALE_FORMATS}")
        # Every question uses its own (entity, property) pair; a yes/no question needs a true or a false one
        # (half each), a multiple-choice question a true one (its correct choice).
        quotas = [_Quota.for_split(n, self.mc_fraction) for n in (self.n_train, self.n_dev, self.n_test)]
        true_needed = sum(q.yes + q.mc for q in quotas)
        false_needed = sum(q.no for q in quotas)
        true_pairs = self.entities_per_category * self.n_properties * self.categories_per_property
        false_pairs = self.n_entities * self.n_properties - true_pairs
        if true_needed > true_pairs or false_needed > false_pairs:
            raise WorldConfigError(
                f"WorldConfig: n_train + n_dev + n_test = {self.n_train + self.n_dev + self.n_test} questions need "
                f"{true_needed} true and {false_needed} false distinct entity-property pairs, but the world has "
                f"{true_pairs} and {false_pairs}; lower the split sizes or add properties or entities"
            )

    @property
    def n_entities(self) -> int:
        return self.n_categories * self.entities_per_category

    @property
    def categories_per_property(self) -> int:
        return min(max(round(self.property_rate * self.n_categories), 1), self.n_categories - 1)


@dataclass(frozen=True)
class World:
    """The generated facts. ``holds`` is the set of (category, property) pairs with "every C can P"."""

    config: WorldConfig
    entities: tuple[str, ...]
    categories: tuple[str, ...]
    properties: tuple[str, ...]
    locations: tuple[str, ...]
    colours: tuple[str, ...]
    category_of: dict[str, str]
    location_of: dict[str, str]
    colour_of: dict[str, str]
    holds: frozenset[tuple[str, str]]
    members: dict[str, tuple[str, ...]] = field(repr=False)

    def has(self, category: str, prop: str) -> bool:
        return (category, prop) in self.holds

    def can(self, entity: str, prop: str) -> bool:
        return self.has(self.category_of[entity], prop)

    def gold_rationale(self, entity: str, prop: str) -> str:
        """The supporting chain for the true answer to the yes/no question "can ``entity`` ``prop``?", in the
        configured format (a multiple-choice question's is ``grammar.choice_chains``)."""
        category = self.category_of[entity]
        return grammar.chain(entity, category, prop, self.has(category, prop), self.rationale_format)

    @property
    def rationale_format(self) -> RationaleFormat:
        return self.config.rationale_format  # type: ignore[return-value]

    def vocabulary(self) -> list[str]:
        """Every word a ToyWorld question, fact or rationale can contain."""
        words = {
            *grammar.FUNCTION_WORDS,
            *self.entities,
            *self.categories,
            *self.properties,
            *self.locations,
            *self.colours,
        }
        return sorted(words)


def _make_names(rng: random.Random, count: int, reserved: set[str]) -> list[str]:
    """Distinct pronounceable made-up words (consonant-vowel-consonant-vowel-consonant)."""
    names: list[str] = []
    seen = set(reserved)
    while len(names) < count:
        letters = [rng.choice(_CONSONANTS if i % 2 == 0 else _VOWELS) for i in range(5)]
        name = "".join(letters)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def generate_world(config: WorldConfig) -> World:
    """Draw names and facts from ``config.seed``; the same config always gives the same world."""
    rng = random.Random(f"toyworld-facts-{config.seed}")
    reserved = {*grammar.FUNCTION_WORDS, *grammar.PROPERTY_WORDS, *grammar.LOCATION_WORDS, *grammar.COLOUR_WORDS}
    names = _make_names(rng, config.n_categories + config.n_entities, reserved)
    categories = tuple(names[: config.n_categories])
    entities = tuple(names[config.n_categories :])
    properties = tuple(rng.sample(grammar.PROPERTY_WORDS, config.n_properties))
    locations = tuple(rng.sample(grammar.LOCATION_WORDS, config.n_locations))
    colours = tuple(rng.sample(grammar.COLOUR_WORDS, config.n_colours))
    category_of = {entity: categories[i // config.entities_per_category] for i, entity in enumerate(entities)}
    members = {c: tuple(e for e in entities if category_of[e] == c) for c in categories}
    # Exactly the same number of categories per property keeps answers balanced for every property and seed.
    holds = frozenset((c, p) for p in properties for c in rng.sample(categories, config.categories_per_property))
    return World(
        config=config,
        entities=entities,
        categories=categories,
        properties=properties,
        locations=locations,
        colours=colours,
        category_of=category_of,
        location_of={e: rng.choice(locations) for e in entities},
        colour_of={e: rng.choice(colours) for e in entities},
        holds=holds,
        members=members,
    )


def _wrong_options(world: World, entity: str, prop: str, held_out: set[tuple[str, str]]) -> list[list[str]]:
    """Where the wrong choices of a multiple-choice question about the true pair (``entity``, ``prop``) come from: one
    entity from each of several categories that lack ``prop`` (distinct categories, so that a counterfactual chain
    "every C' can P" entails one choice alone), or several properties the entity's category lacks. A wrong choice
    mentions one more (entity, property) pair, so none may be a pair ``held_out`` of training."""
    if world.config.mc_choices == "entities":
        groups = [[e for e in world.members[c] if (e, prop) not in held_out] for c in world.categories
                  if not world.has(c, prop)]  # fmt: skip
        return [group for group in groups if group]
    return [[p] for p in world.properties if not world.can(entity, p) and (entity, p) not in held_out]


def _mc_eligible(world: World, entity: str, prop: str, held_out: set[tuple[str, str]]) -> bool:
    return len(_wrong_options(world, entity, prop, held_out)) >= world.config.n_mc_choices - 1


def _draw_wrong(world: World, entity: str, prop: str, held_out: set[tuple[str, str]], rng: random.Random) -> list[str]:
    """The wrong choices of a multiple-choice question (``_mc_eligible`` checked that there are enough)."""
    groups = rng.sample(_wrong_options(world, entity, prop, held_out), world.config.n_mc_choices - 1)
    return [rng.choice(group) for group in groups]


def _mentioned_pairs(world: World, entity: str, prop: str, wrong: list[str]) -> set[tuple[str, str]]:
    """The (entity, property) pairs a multiple-choice question's wrong choices mention."""
    if world.config.mc_choices == "entities":
        return {(choice, prop) for choice in wrong}
    return {(entity, choice) for choice in wrong}


def _take_pairs(
    world: World, pool: list[tuple[str, str]], quota: _Quota, rng: random.Random, split: str,
    held_out: set[tuple[str, str]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """Assign pairs from the front of ``pool`` to the yes, no and multiple-choice buckets until the quota is met; a
    multiple-choice question's wrong choices must not mention a pair ``held_out``."""
    yes, no, mc = [], [], []
    need = _Quota(quota.yes, quota.no, quota.mc)
    for pair in pool:
        if need.total() == 0:
            break
        entity, prop = pair
        if not world.can(entity, prop):
            if need.no:
                no.append(pair)
                need.no -= 1
            continue
        # A true pair can feed a yes/no question or be the correct choice of a multiple-choice one.
        weight_mc = need.mc if _mc_eligible(world, entity, prop, held_out) else 0
        if weight_mc + need.yes == 0:
            continue
        if rng.random() * (weight_mc + need.yes) < weight_mc:
            mc.append(pair)
            need.mc -= 1
        else:
            yes.append(pair)
            need.yes -= 1
    if need.total():
        raise WorldConfigError(
            f"WorldConfig: the {split} split needs {need.yes} more true, {need.no} more false and {need.mc} more "
            "multiple-choice entity-property pairs than the world has left; lower the split sizes or mc_fraction, "
            "or enlarge the world"
        )
    return yes, no, mc


def _cues(n: int, answer: str, strength: float, rng: random.Random) -> list[str]:
    """Wording cues for ``n`` questions with this answer: exactly round(strength * n) point at the answer."""
    aligned = next(cue for cue, cue_answer in _CUE_ANSWER_ITEMS if cue_answer == answer)
    other = next(cue for cue, cue_answer in _CUE_ANSWER_ITEMS if cue_answer != answer)
    n_aligned = round(strength * n)
    cues = [aligned] * n_aligned + [other] * (n - n_aligned)
    rng.shuffle(cues)
    return cues


def _yes_no_example(world: World, split: str, entity: str, prop: str, cue: str) -> Example:
    holds = world.can(entity, prop)
    answer = 0 if holds else 1
    meta: dict[str, Any] = {
        "kind": "yesno",
        "entity": entity,
        "category": world.category_of[entity],
        "property": prop,
        "cue": cue,
        "cue_answer": grammar.CUE_ANSWER[cue],
        "cue_aligned": grammar.CUE_ANSWER[cue] == YES_NO[answer],
        "split": split,
        "rationale_format": world.rationale_format,
    }
    question = grammar.yes_no_question(entity, prop, cue)
    return Example("", question, YES_NO, answer, world.gold_rationale(entity, prop), meta)


def chooses_properties(example: Example) -> bool:
    """Whether ``example`` is a multiple-choice question between properties (records written before ``mc_choices``
    existed are between entities)."""
    return example.meta["kind"] == "mc" and example.meta.get("mc_choices", "entities") == "properties"


def _mc_example(world: World, split: str, entity: str, prop: str, position: int, wrong: list[str]) -> Example:
    meta: dict[str, Any] = {
        "kind": "mc",
        "mc_choices": world.config.mc_choices,
        "entity": entity,
        "category": world.category_of[entity],
        "property": prop,
        "cue": None,
        "cue_answer": None,
        "cue_aligned": None,
        "split": split,
        "rationale_format": world.rationale_format,
    }
    choices = [*wrong[:position], entity if world.config.mc_choices == "entities" else prop, *wrong[position:]]
    if world.config.mc_choices == "properties":
        # The chain of the one property the entity's category has ("E is a C . every C can P .") decides the question
        # and needs no choice copied by its position.
        question = grammar.mc_question("properties", choices, entity=entity)
        rationale = world.gold_rationale(entity, prop)
    else:
        meta["choice_categories"] = [world.category_of[e] for e in choices]
        question = grammar.mc_question("entities", choices, prop=prop)
        rationale = grammar.choice_chains(choices, meta["choice_categories"], prop, position, world.rationale_format)
    return Example("", question, tuple(choices), position, rationale, meta)


def build_splits(world: World) -> dict[str, list[Example]]:
    """Train, dev and test examples. Dev/test pairs are held out of train; every entity appears in train."""
    config = world.config
    rng = random.Random(f"toyworld-splits-{config.seed}")
    pairs = [(e, p) for e in world.entities for p in world.properties]
    rng.shuffle(pairs)

    # Held-out pairs first, never taking an entity's last pair so that every entity stays in training.
    left = {e: config.n_properties for e in world.entities}
    held_pool = []
    for entity, prop in pairs:
        if left[entity] > 1:
            held_pool.append((entity, prop))
            left[entity] -= 1
    buckets: dict[str, tuple[list, list, list]] = {}
    used: set[tuple[str, str]] = set()
    for split, size in (("dev", config.n_dev), ("test", config.n_test)):
        pool = [pair for pair in held_pool if pair not in used]
        buckets[split] = _take_pairs(world, pool, _Quota.for_split(size, config.mc_fraction), rng, split, set())
        used.update(pair for bucket in buckets[split] for pair in bucket)
    # A held-out multiple-choice question mentions its wrong choices' pairs too: they are drawn now and kept out of
    # training, so no training question or chain states a fact about a held-out pair.
    reserved: dict[tuple[str, str], list[str]] = {}
    for split in ("dev", "test"):
        for entity, prop in buckets[split][2]:
            reserved[entity, prop] = _draw_wrong(world, entity, prop, set(), rng)
            used.update(_mentioned_pairs(world, entity, prop, reserved[entity, prop]))

    # Training pairs: one pair of every entity goes first so that each entity is asked about.
    rest = [pair for pair in pairs if pair not in used]
    firsts: dict[str, tuple[str, str]] = {}
    for pair in rest:
        firsts.setdefault(pair[0], pair)
    front = set(firsts.values())
    train_pool = list(firsts.values()) + [pair for pair in rest if pair not in front]
    train_quota = _Quota.for_split(config.n_train, config.mc_fraction)
    buckets["train"] = _take_pairs(world, train_pool, train_quota, rng, "train", used)
    missing = set(world.entities) - {e for bucket in buckets["train"] for e, _ in bucket}
    if missing:
        raise WorldConfigError(
            f"WorldConfig: n_train = {config.n_train} leaves {len(missing)} entities out of training; "
            "every held-out entity must be seen in training, so raise n_train"
        )

    splits: dict[str, list[Example]] = {}
    for split in SPLITS:
        yes, no, mc = buckets[split]
        strength = config.shortcut_strength if split == "train" else config.eval_shortcut_strength
        examples = [
            _yes_no_example(world, split, e, p, cue)
            for bucket, answer in ((yes, grammar.YES), (no, grammar.NO))
            for (e, p), cue in zip(bucket, _cues(len(bucket), answer, strength, rng))
        ]
        positions = [i % config.n_mc_choices for i in range(len(mc))]
        rng.shuffle(positions)
        examples += [
            _mc_example(world, split, e, p, pos, reserved.get((e, p)) or _draw_wrong(world, e, p, used, rng))
            for (e, p), pos in zip(mc, positions)
        ]
        rng.shuffle(examples)
        splits[split] = [
            Example(f"toyworld-{split}-{i:05d}", ex.question, ex.choices, ex.answer, ex.rationale, ex.meta)
            for i, ex in enumerate(examples)
        ]
    return splits


def load_toyworld(config: WorldConfig) -> tuple[World, dict[str, list[Example]]]:
    """The world and its train/dev/test examples (``Example.rationale`` is the gold rationale)."""
    world = generate_world(config)
    return world, build_splits(world)
