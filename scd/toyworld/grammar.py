"""ToyWorld's sentence grammar: the one place that renders questions, facts and rationales as text.

Every text is lower-case words and punctuation separated by single spaces, so a word-level tokenizer covers it and
the checker can parse it back exactly. A rationale is a sequence of sentences ending in " ."; a sentence joins
clauses with " , and ".
"""

from __future__ import annotations

from typing import Literal

RationaleFormat = Literal["rule_first", "entity_first"]
RATIONALE_FORMATS: tuple[str, ...] = ("rule_first", "entity_first")

YES, NO = "yes", "no"
YES_NO: tuple[str, str] = (YES, NO)

# Question wordings for yes/no questions; the shortcut cue is which one is used. The training set pairs "think" with
# "yes" and "true" with "no" at rate ``shortcut_strength``. Both end in the same proposition "E can P ?", so the cue
# is a pure surface prefix and the content words sit at the same places whatever the cue.
CUE_WORDINGS: dict[str, str] = {
    "think": "do you think {entity} can {property} ?",
    "true": "is it true that {entity} can {property} ?",
}
CUE_ANSWER: dict[str, str] = {"think": YES, "true": NO}
# Multiple choice asks either which entity can do a property (``mc_choices: entities``) or which property an entity can
# do (``mc_choices: properties``).
MC_WORDINGS: dict[str, str] = {
    "entities": "which of these can {property} ? {options}",
    "properties": "which of these can {entity} do ? {options}",
}
MC_CHOICES: tuple[str, ...] = tuple(MC_WORDINGS)
# Each choice of a multiple-choice question carries a marker, "( 1 ) E", in the question and before its chain in the
# rationale, so that the k-th choice can be found by content (its marker): a T5 decoder's attention to its input has
# no positions. Measured: the 0.7M T5 still does not copy the choices in order (ATTEMPTS.md, W4s7m).
MARKERS: tuple[str, ...] = tuple(str(k) for k in range(1, 10))

# Content-free sentences: the "generic" rationale style, and what the checker labels generic.
GENERIC_CLAUSES: tuple[str, ...] = (
    "this is well known",
    "that is common knowledge",
    "it follows from the facts",
    "think about what it is",
)

PROPERTY_WORDS: tuple[str, ...] = (
    "fly", "swim", "sing", "glow", "climb", "dig", "jump", "float", "hum", "burrow", "bite", "roar", "hover", "spin",
    "crawl", "whistle", "glide", "sprint", "dive", "howl", "hop", "bark", "bloom", "melt", "sting", "chirp", "bounce",
    "shine", "purr", "slither", "skate", "paddle",
)  # fmt: skip
LOCATION_WORDS: tuple[str, ...] = (
    "forest", "desert", "river", "mountain", "cave", "valley", "swamp", "island", "meadow", "tundra", "canyon",
    "harbor",
)  # fmt: skip
COLOUR_WORDS: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "black", "white", "grey", "brown", "pink", "purple", "orange", "golden",
)  # fmt: skip

# Words that glue the grammar together (everything except names, properties, locations and colours). The teacher's
# prompt template (conf/teacher/toyworld.yaml) adds its own words to the tokenizer.
FUNCTION_WORDS: tuple[str, ...] = tuple(
    sorted(
        {
            *"the answer is . , and every no can cannot a lives in which of these ? yes ( )".split(),
            *MARKERS,
            *" ".join(CUE_WORDINGS.values()).split(),
            *" ".join(MC_WORDINGS.values()).split(),
            *" ".join(GENERIC_CLAUSES).split(),
        }
        - {"{entity}", "{property}", "{options}"}
    )
)


def isa(entity: str, category: str) -> str:
    return f"{entity} is a {category}"


def rule(category: str, prop: str, positive: bool) -> str:
    return f"{'every' if positive else 'no'} {category} can {prop}"


def can(entity: str, prop: str, positive: bool) -> str:
    return f"{entity} {'can' if positive else 'cannot'} {prop}"


def lives_in(entity: str, location: str) -> str:
    return f"{entity} lives in the {location}"


def coloured(entity: str, colour: str) -> str:
    return f"{entity} is {colour}"


def answer_is(answer: str) -> str:
    return f"the answer is {answer}"


def sentence(*clauses: str) -> str:
    return " , and ".join(clauses) + " ."


def chain(entity: str, category: str, prop: str, positive: bool, fmt: RationaleFormat) -> str:
    """The two-fact rationale: rule first ("every C can P , and E is a C .") or entity first ("E is a C . ...")."""
    if fmt == "rule_first":
        return sentence(rule(category, prop, positive), isa(entity, category))
    if fmt == "entity_first":
        return f"{sentence(isa(entity, category))} {sentence(rule(category, prop, positive))}"
    raise ValueError(f"unknown rationale format {fmt!r}: use one of {RATIONALE_FORMATS}")


def marker(k: int) -> str:
    """The marker of choice ``k`` (0-based): "( 1 )" for the first."""
    return f"( {MARKERS[k]} )"


def choice_chains(
    entities: tuple[str, ...] | list[str], categories: tuple[str, ...] | list[str], prop: str, chosen: int,
    fmt: RationaleFormat,
) -> str:
    """The multiple-choice rationale: each choice's two-fact chain in turn after its marker, every hop written in the
    order it is computed, with "every" only for ``chosen`` ("( 1 ) A is a C . no C can P . ( 2 ) B is a D . every D
    can P . ..." entity first).
    For the correct choice every fact is true; for another choice the polarities are those that would make it the
    answer (a counterfactual chain)."""
    return " ".join(
        f"{marker(k)} {chain(entity, category, prop, k == chosen, fmt)}"
        for k, (entity, category) in enumerate(zip(entities, categories))
    )


def yes_no_question(entity: str, prop: str, cue: str) -> str:
    return CUE_WORDINGS[cue].format(entity=entity, property=prop)


def mc_question(choices_are: str, choices: tuple[str, ...] | list[str], entity: str = "", prop: str = "") -> str:
    """A multiple-choice question over entities ("which of these can P ? ( 1 ) A ...", ``prop`` given) or over
    properties ("which of these can E do ? ( 1 ) P ...", ``entity`` given)."""
    options = " ".join(f"{marker(k)} {choice}" for k, choice in enumerate(choices))
    return MC_WORDINGS[choices_are].format(entity=entity, property=prop, options=options)
