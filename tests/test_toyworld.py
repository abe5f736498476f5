"""ToyWorld generator, shortcut statistics, checker, tokenizer and corpus."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from scd.toyworld import grammar
from scd.data.perturb import perturbed_answer
from scd.toyworld.checker import judge
from scd.toyworld.corpus import WRONG, CorpusConfig, CorpusConfigError, build_corpus
from scd.toyworld.gold import gold_rationale
from scd.toyworld.tokenizer import build_tokenizer
from scd.toyworld.world import WorldConfig, WorldConfigError, load_toyworld
from tests.conftest import TOYWORLD_PROMPT, compose_config


@pytest.fixture(scope="module")
def toy():
    return load_toyworld(WorldConfig())


def _first(examples, **meta):
    return next(ex for ex in examples if all(ex.meta.get(k) == v for k, v in meta.items()))


# --- generator -----------------------------------------------------------------------------------------------------


def test_same_seed_same_world_and_examples(toy):
    world, splits = toy
    world2, splits2 = load_toyworld(WorldConfig())
    assert world2.holds == world.holds and world2.category_of == world.category_of
    assert splits2 == splits


def test_different_seed_different_world():
    world, splits = load_toyworld(WorldConfig())
    other, other_splits = load_toyworld(WorldConfig(seed=1))
    assert other.entities != world.entities
    assert [ex.question for ex in other_splits["test"]] != [ex.question for ex in splits["test"]]


def test_split_sizes_kinds_and_answers(toy):
    world, splits = toy
    config = world.config
    sizes = {"train": config.n_train, "dev": config.n_dev, "test": config.n_test}
    assert {k: len(v) for k, v in splits.items()} == sizes
    for split, examples in splits.items():
        assert len({ex.id for ex in examples}) == len(examples)
        mc = [ex for ex in examples if ex.meta["kind"] == "mc"]
        assert len(mc) == round(config.mc_fraction * len(examples))
        for ex in examples:
            entity, prop = ex.meta["entity"], ex.meta["property"]
            if ex.meta["kind"] == "mc":
                # Exactly one choice can do the property, and it is the answer.
                assert [world.can(e, prop) for e in ex.choices].count(True) == 1
                assert ex.answer_text == entity and world.can(entity, prop)
            else:
                assert ex.choices == ("yes", "no")
                assert ex.answer == (0 if world.can(entity, prop) else 1)
            assert judge(world, ex, ex.rationale).supports(ex.answer)


def test_held_out_pairs_are_new_but_entities_are_not(toy):
    _, splits = toy
    pairs = {s: {(ex.meta["entity"], ex.meta["property"]) for ex in splits[s]} for s in splits}
    assert not pairs["train"] & pairs["dev"] and not pairs["train"] & pairs["test"] and not pairs["dev"] & pairs["test"]
    train_entities = {e for e, _ in pairs["train"]}
    assert {e for e, _ in pairs["dev"] | pairs["test"]} <= train_entities


@pytest.mark.parametrize("mc_choices", grammar.MC_CHOICES)
def test_no_training_question_mentions_a_held_out_pair(mc_choices: str) -> None:
    """A multiple-choice question mentions a pair per choice; none of a dev/test question's is in a training question
    (before, 86 of 480 held-out yes/no pairs were a training question's wrong choice, with their chain)."""
    _, splits = load_toyworld(WorldConfig(n_categories=4, entities_per_category=25, n_properties=16, n_train=600,
                                          n_dev=100, n_test=200, mc_choices=mc_choices))  # fmt: skip

    def mentioned(ex):
        if ex.meta["kind"] == "yesno":
            return {(ex.meta["entity"], ex.meta["property"])}
        if mc_choices == "entities":
            return {(e, ex.meta["property"]) for e in ex.choices}
        return {(ex.meta["entity"], p) for p in ex.choices}

    train = set().union(*map(mentioned, splits["train"]))
    held_out = set().union(*map(mentioned, splits["dev"] + splits["test"]))
    assert len(held_out) > 300 and not train & held_out


def test_entity_first_format_is_a_config_option():
    world, splits = load_toyworld(WorldConfig(rationale_format="entity_first"))
    ex = _first(splits["train"], kind="yesno")
    entity, category = ex.meta["entity"], ex.meta["category"]
    assert ex.rationale.startswith(f"{entity} is a {category} . ")
    assert judge(world, ex, ex.rationale).supports(ex.answer)


@pytest.mark.parametrize(
    "field, value",
    [("n_categories", 1), ("property_rate", 1.0), ("shortcut_strength", 1.5), ("rationale_format", "chain"),
     ("n_train", 5000), ("n_properties", 99)],
)  # fmt: skip
def test_bad_world_config_names_the_field(field, value):
    with pytest.raises(WorldConfigError, match=field if field != "n_train" else "distinct"):
        WorldConfig(**{field: value})


# --- shortcut ------------------------------------------------------------------------------------------------------


def _cue_agreement(examples):
    yes_no = [ex for ex in examples if ex.meta["kind"] == "yesno"]
    return sum(ex.meta["cue_aligned"] for ex in yes_no) / len(yes_no), yes_no


@pytest.mark.parametrize("strength", [0.9, 0.7])
def test_shortcut_statistics(strength):
    world, splits = load_toyworld(WorldConfig(shortcut_strength=strength))
    agreement, yes_no = _cue_agreement(splits["train"])
    assert agreement == pytest.approx(strength, abs=0.01)
    for ex in yes_no:
        assert ex.meta["cue_aligned"] == (ex.meta["cue_answer"] == ex.answer_text)
        assert ex.question == grammar.CUE_WORDINGS[ex.meta["cue"]].format(entity=ex.meta["entity"],
                                                                          property=ex.meta["property"])
    for split in ("dev", "test"):
        agreement, yes_no = _cue_agreement(splits[split])
        assert agreement == pytest.approx(0.5, abs=0.01)
        # Independent of the answer: within each answer the cue is split evenly.
        for answer in (0, 1):
            cues = [ex.meta["cue"] for ex in yes_no if ex.answer == answer]
            assert cues.count("think") / len(cues) == pytest.approx(0.5, abs=0.02)
    assert all(ex.meta["cue"] is None for s in splits.values() for ex in s if ex.meta["kind"] == "mc")


def test_answers_are_balanced(toy):
    _, splits = toy
    for examples in splits.values():
        yes_no = [ex for ex in examples if ex.meta["kind"] == "yesno"]
        assert abs(sum(ex.answer == 0 for ex in yes_no) - len(yes_no) / 2) <= 0.5


# --- checker -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cases(toy):
    world, splits = toy
    yes = _first(splits["test"], kind="yesno", cue="think", cue_aligned=True)
    no = _first(splits["test"], kind="yesno", cue="think", cue_aligned=False)
    mc = _first(splits["test"], kind="mc")
    return world, yes, no, mc


def test_checker_supporting_chains(cases):
    world, yes, no, _ = cases
    e, c, p = yes.meta["entity"], yes.meta["category"], yes.meta["property"]
    for text in (f"every {c} can {p} , and {e} is a {c} .", f"{e} is a {c} . every {c} can {p} .",
                 f"this is well known . every {c} can {p} , and {e} is a {c} ."):  # fmt: skip
        j = judge(world, yes, text)
        assert (j.label, j.entailed, j.chain_answer, j.supports(0), j.supports(1)) == ("supporting", 0, 0, True, False)
        assert j.grammatical and j.new_info
    e, c, p = no.meta["entity"], no.meta["category"], no.meta["property"]
    j = judge(world, no, f"no {c} can {p} , and {e} is a {c} .")
    assert (j.label, j.entailed, j.supports(1)) == ("supporting", 1, True)


def test_checker_restatement_generic_irrelevant_partial(cases):
    world, yes, _, _ = cases
    e, c, p = yes.meta["entity"], yes.meta["category"], yes.meta["property"]
    for text in (f"{e} can {p} .", "the answer is yes .", f"{e} can {p} , and {e} is a {c} ."):
        j = judge(world, yes, text)
        assert (j.label, j.entailed, j.chain_answer, j.supports(0)) == ("restatement", 0, None, False)
    assert not judge(world, yes, f"{e} can {p} .").new_info
    j = judge(world, yes, "this is well known .")
    assert (j.label, j.entailed, j.new_info) == ("generic", None, False)
    where, colour = world.location_of[e], world.colour_of[e]
    j = judge(world, yes, f"{e} lives in the {where} , and {e} is {colour} .")
    assert (j.label, j.entailed, j.new_info) == ("irrelevant", None, True)
    j = judge(world, yes, f"{e} is a {c} .")
    assert (j.label, j.entailed) == ("partial", None)


def test_checker_contradicting_keeps_what_it_entails(cases):
    world, yes, _, _ = cases
    e, c, p = yes.meta["entity"], yes.meta["category"], yes.meta["property"]
    # The counterfactual rationale: a complete chain for "no" with a false rule.
    j = judge(world, yes, f"no {c} can {p} , and {e} is a {c} .")
    assert (j.label, j.entailed, j.chain_answer, j.n_false, j.supports(1)) == ("contradicting", 1, 1, 1, False)
    other = next(x for x in world.categories if x != c)
    j = judge(world, yes, f"every {other} can {p} , and {e} is a {other} .")
    assert j.label == "contradicting" and j.n_false >= 1
    assert judge(world, yes, "the answer is no .").label == "contradicting"
    wrong_colour = next(x for x in world.colours if x != world.colour_of[e])
    assert judge(world, yes, f"{e} is {wrong_colour} .").label == "contradicting"
    # Premises that entail both answers entail none.
    assert judge(world, yes, f"every {c} can {p} , and {e} is a {c} . {e} cannot {p} .").entailed is None


@pytest.mark.parametrize(
    "text",
    ["", "every", "every {c} can {p} , and {e} is a", "every {c} can {p} , and {e} is a {c}",
     "the answer is maybe .", "{e} is a blorp .", "So the answer is yes", "every {c} can {p} . ."],
)  # fmt: skip
def test_checker_malformed(cases, text):
    world, yes, _, _ = cases
    text = text.format(e=yes.meta["entity"], c=yes.meta["category"], p=yes.meta["property"])
    j = judge(world, yes, text)
    assert (j.label, j.grammatical, j.entailed) == ("malformed", False, None)


def test_checker_multiple_choice(cases):
    world, _, _, mc = cases
    p, k = mc.meta["property"], mc.answer
    e, c = mc.choices[k], world.category_of[mc.choices[k]]
    j = judge(world, mc, f"every {c} can {p} , and {e} is a {c} .")
    assert (j.label, j.entailed) == ("supporting", k) and j.supports(k)
    assert judge(world, mc, f"the answer is {e} .").entailed == k
    # Ruling out the other two choices entails the third.
    others = [i for i in range(len(mc.choices)) if i != k]
    text = " ".join(f"no {world.category_of[mc.choices[i]]} can {p} , and {mc.choices[i]} is a "
                    f"{world.category_of[mc.choices[i]]} ." for i in others)  # fmt: skip
    assert judge(world, mc, text).chain_answer == k
    wrong = mc.choices[others[0]]
    j = judge(world, mc, f"every {world.category_of[wrong]} can {p} , and {wrong} is a {world.category_of[wrong]} .")
    assert (j.label, j.entailed) == ("contradicting", others[0])


# --- tokenizer -----------------------------------------------------------------------------------------------------


def test_tokenizer_round_trip_newline_and_save_load(toy, tmp_path):
    world, splits = toy
    demo = splits["train"][0]
    text = TOYWORLD_PROMPT.render(demo.question, demo.choices, demo.answer_text, demo.rationale)
    tokenizer = build_tokenizer(world, [text])
    prompt = text + TOYWORLD_PROMPT.separator + "[counterfactual] " + demo.question + " choices : yes | no"
    ids = tokenizer(prompt)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert ids.count(tokenizer.convert_tokens_to_ids("\n")) == 1
    decoded = tokenizer.decode(ids)
    assert "\n" in decoded and decoded.split() == prompt.split()
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(prompt)["input_ids"] == ids and loaded.decode(ids) == decoded
    assert (loaded.pad_token, loaded.eos_token, loaded.bos_token, loaded.unk_token) == ("<pad>", "</s>", "<s>", "<unk>")
    assert len({loaded.pad_token_id, loaded.eos_token_id, loaded.bos_token_id, loaded.unk_token_id}) == 4
    assert loaded("zzz unknownword")["input_ids"] == [loaded.unk_token_id] * 2


def test_tokenizer_covers_every_generated_text(toy):
    world, splits = toy
    corpus = build_corpus(world, splits, CorpusConfig())
    lines = corpus.lines(TOYWORLD_PROMPT)
    tokenizer = build_tokenizer(world, lines[-1:])  # one demonstration brings the prompt's words
    texts = lines + [ex.question + " " + " ".join(ex.choices) for s in splits.values() for ex in s]
    ids = tokenizer(texts)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)


# --- corpus --------------------------------------------------------------------------------------------------------


def test_corpus_holds_facts_but_no_held_out_demonstration(toy):
    world, splits = toy
    corpus = build_corpus(world, splits, CorpusConfig())
    held_out = {(ex.meta["entity"], ex.meta["property"]) for s in ("dev", "test") for ex in splits[s]}
    demo_pairs = {(d.example.meta["entity"], d.example.meta["property"]) for d in corpus.demonstrations}
    assert not demo_pairs & held_out
    lines = set(corpus.lines(TOYWORLD_PROMPT))
    for ex in splits["test"][:20]:
        e, c, p = ex.meta["entity"], ex.meta["category"], ex.meta["property"]
        assert f"{e} is a {c} ." in lines
        assert grammar.sentence(grammar.rule(c, p, world.has(c, p))) in lines
    assert all(d.text(TOYWORLD_PROMPT).startswith("Q : ") for d in corpus.demonstrations)


def error_share(corpus) -> float:
    """Share of the corpus's demonstrations whose rationale argues the wrong answer."""
    return sum(d.style == WRONG for d in corpus.demonstrations) / len(corpus.demonstrations)


def test_corpus_styles_per_entity_and_error_rate(toy):
    world, splits = toy
    config = CorpusConfig()
    corpus = build_corpus(world, splits, config)
    assert len(corpus.unreliable) == round(config.teacher_error_rate * len(world.entities))
    assert error_share(corpus) == pytest.approx(config.teacher_error_rate, abs=0.03)
    for demo in corpus.demonstrations:
        j = judge(world, demo.example, demo.rationale)
        expected = {"support": "supporting", "restate": "restatement", "generic": "generic",
                    "irrelevant": "irrelevant", WRONG: "contradicting"}[demo.style]  # fmt: skip
        assert j.label == expected
        if demo.style == WRONG:
            assert j.entailed is not None and j.entailed != demo.example.answer
    # A reliable entity's demonstrations mostly follow its dominant style.
    reliable = [d for d in corpus.demonstrations if d.example.meta["entity"] not in corpus.unreliable]
    follows = sum(d.style == corpus.entity_style[d.example.meta["entity"]] for d in reliable) / len(reliable)
    # P(dominant) = concentration + (1 - concentration) * mix[dominant]; averaged over entities mix[dominant] ~ sum w^2.
    weights = [w / sum(config.mix) for w in config.mix]
    expected_follow = config.style_concentration + (1 - config.style_concentration) * sum(w * w for w in weights)
    assert follows == pytest.approx(expected_follow, abs=0.04)
    no_errors = build_corpus(world, splits, dataclasses.replace(config, teacher_error_rate=0.0))
    assert error_share(no_errors) == 0.0


def test_bad_corpus_config_names_the_field():
    with pytest.raises(CorpusConfigError, match="teacher_error_rate"):
        CorpusConfig(teacher_error_rate=1.0)
    with pytest.raises(CorpusConfigError, match="mix_generic"):
        CorpusConfig(mix_generic=-0.1)


@pytest.mark.parametrize("rationale_format", ["rule_first", "entity_first"])
@pytest.mark.parametrize("mc_choices", grammar.MC_CHOICES)
def test_gold_rationales_support_the_answer_they_are_written_for(rationale_format: str, mc_choices: str) -> None:
    world, splits = load_toyworld(WorldConfig(rationale_format=rationale_format, mc_choices=mc_choices))
    for example in (ex for split in splits.values() for ex in split):
        gold = judge(world, example, gold_rationale(example, example.answer))
        assert gold.supports(example.answer) and example.rationale == gold_rationale(example, example.answer)
        wrong = perturbed_answer(example, 0)
        counterfactual = judge(world, example, gold_rationale(example, wrong))
        # The chain for the perturbed answer entails it, and states a false rule (it cannot be true).
        assert counterfactual.entailed == wrong and counterfactual.label == "contradicting"


def test_a_multiple_choice_rationale_states_every_choice_in_turn() -> None:
    """Each choice's marker, category and rule, in the order of the choices: every hop is written where it is
    computed, and the wrong choices come from distinct categories, so a counterfactual chain entails one choice."""
    world, splits = load_toyworld(WorldConfig(rationale_format="entity_first"))
    example = next(ex for ex in splits["test"] if ex.meta["kind"] == "mc")
    prop = example.meta["property"]
    expected = " ".join(
        f"( {k + 1} ) {e} is a {world.category_of[e]} . {'every' if world.can(e, prop) else 'no'} "
        f"{world.category_of[e]} can {prop} ."
        for k, e in enumerate(example.choices)
    )
    assert example.rationale == expected
    # The question carries the same markers, so the k-th chain's entity is found by its marker.
    assert example.question == f"which of these can {prop} ? " + " ".join(
        f"( {k + 1} ) {e}" for k, e in enumerate(example.choices))
    for ex in (ex for split in splits.values() for ex in split if ex.meta["kind"] == "mc"):
        assert len(set(ex.meta["choice_categories"])) == len(ex.choices)
        assert [world.can(e, ex.meta["property"]) for e in ex.choices].count(True) == 1


def test_a_multiple_choice_question_over_properties_has_one_chain_and_needs_no_copy() -> None:
    """Over properties the gold chain is the entity's chain for the one choice its category has, exactly the yes/no
    chain; each wrong choice is a property the category lacks, and its counterfactual chain entails it alone."""
    world, splits = load_toyworld(WorldConfig(rationale_format="entity_first", mc_choices="properties"))
    mc = [ex for split in splits.values() for ex in split if ex.meta["kind"] == "mc"]
    assert len(mc) == sum(round(0.2 * len(split)) for split in splits.values())
    for ex in mc:
        entity, category = ex.meta["entity"], ex.meta["category"]
        assert [world.can(entity, p) for p in ex.choices] == [k == ex.answer for k in range(len(ex.choices))]
        assert ex.choices[ex.answer] == ex.meta["property"]
        assert ex.rationale == f"{entity} is a {category} . every {category} can {ex.meta['property']} ."
        assert ex.question == f"which of these can {entity} do ? " + " ".join(
            f"( {k + 1} ) {p}" for k, p in enumerate(ex.choices))
    example = mc[0]
    wrong = next(k for k in range(len(example.choices)) if k != example.answer)
    j = judge(world, example, gold_rationale(example, wrong))
    assert (j.label, j.entailed, j.chain_answer) == ("contradicting", wrong, wrong)
    # A restatement of the right property, and a true rule about a property that is not a choice, decide nothing.
    assert judge(world, example, f"{example.meta['entity']} can {example.meta['property']} .").label == "restatement"
    off = next(p for p in world.properties if p not in example.choices)
    rule = f"{'every' if world.has(example.meta['category'], off) else 'no'} {example.meta['category']} can {off} ."
    assert judge(world, example, rule).label == "irrelevant"


def test_bad_mc_choices_names_the_field() -> None:
    with pytest.raises(WorldConfigError, match="mc_choices"):
        WorldConfig(mc_choices="colours")


def test_multiple_choice_needs_a_category_per_wrong_choice() -> None:
    with pytest.raises(WorldConfigError, match="n_mc_choices"):
        WorldConfig(n_categories=2, n_mc_choices=3)



def test_the_icl_teacher_is_shown_a_multiple_choice_questions_choices():
    """The ICL teacher answers with the teacher's template (conf/teacher/toyworld.yaml): it must show the choices, or a
    multiple-choice answer cannot name one (issue 21: 78 of 400 answers were unparsable)."""
    from omegaconf import OmegaConf

    from scd.teacher.icl import AnsweringPrompt
    from tests.conftest import CONF

    teacher = OmegaConf.load(CONF / "teacher" / "toyworld.yaml")
    _, splits = load_toyworld(WorldConfig(rationale_format="entity_first"))
    mc = next(ex for ex in splits["test"] if ex.meta["kind"] == "mc")
    query = AnsweringPrompt(teacher.template, teacher.separator).query(mc.question, mc.choices)
    assert query.endswith("A : the answer is") and f"choices : {' | '.join(mc.choices)}" in query


# The digests of the registered worlds' questions: the default (v4: study S, PREREGISTRATION-v4-S.md, the v3.1 world
# in rule-first order) and dataset=toyworld_v3_1 (PREREGISTRATION-v3.1.md, commit 7f50bdc). A change to the generator
# or to conf/dataset/ that alters them needs a new registration.
REGISTERED_WORLDS_SHA256 = {
    "toyworld": "d3ca061550fe2d2e787ebd4bea178812d3f29562dbbe95d2691136535ffb213a",
    "toyworld_v3_1": "34ff0905259ed7cddf30da6ae2874cdfd9a2a085b3881f4c6c88b134d99b519e",
}


@pytest.mark.parametrize("dataset", sorted(REGISTERED_WORLDS_SHA256))
def test_the_registered_worlds_are_unchanged(dataset: str, tmp_path: Path) -> None:
    world = compose_config([f"dataset={dataset}"], tmp_path, tmp_path).dataset.task.world
    _, splits = load_toyworld(WorldConfig(**OmegaConf.to_container(world)))
    digest = hashlib.sha256()
    for split in ("train", "dev", "test"):
        for ex in splits[split]:
            digest.update(json.dumps([split, ex.question, ex.choices, ex.answer, ex.rationale]).encode())
    assert digest.hexdigest() == REGISTERED_WORLDS_SHA256[dataset], (
        f"dataset={dataset}: its questions differ from the registered world's: register the new world "
        "(experiments/toyworld/) before reporting comparisons in it"
    )
