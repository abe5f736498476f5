"""The ToyWorld student's pretraining: facts-only text, span corruption, the knowledge probe's gate, the cache; and the
gold teacher's rationales, judged by the checker."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from transformers import AutoModelForSeq2SeqLM

from scd.data.perturb import perturbed_answer
from scd.toyworld import grammar, pretrain
from scd.toyworld.checker import judge, parse_rationale
from scd.toyworld.gold import gold_rationale
from scd.toyworld.pretrain import (
    PretrainConfig,
    PretrainConfigError,
    PretrainDocuments,
    StudentNotReadyError,
    ensure_pretrained_student,
    pretrain_report,
    probe_knowledge,
    span_corrupt,
)
from scd.toyworld.tokenizer import SENTINELS, build_tokenizer, extend_tokenizer
from scd.toyworld.world import WorldConfig, generate_world, load_toyworld

TINY_WORLD = WorldConfig(n_categories=2, entities_per_category=3, n_properties=4, n_train=12, n_dev=2, n_test=4)
TINY_MODEL = {"model_type": "t5", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 1, "num_heads": 2,
              "dropout_rate": 0.0}  # fmt: skip
QUICK = PretrainConfig(max_steps=3, batch_size=4, warmup_steps=1, probe_threshold=0.0)


def student_tokenizer(world_config: WorldConfig = TINY_WORLD, *texts: str):
    """The world's tokenizer with the pretraining sentinels (and ``texts``), as the ToyWorld task extends it."""
    return extend_tokenizer(build_tokenizer(generate_world(world_config)), [" ".join(SENTINELS), *texts])


def test_pretraining_text_is_true_facts_only() -> None:
    """No question, answer or rationale: every sentence of every document is one true fact of the world."""
    world, splits = load_toyworld(WorldConfig())
    example = next(ex for ex in splits["train"] if ex.meta["kind"] == "yesno")  # facts do not depend on the question
    tokenizer = student_tokenizer(WorldConfig())
    documents = PretrainDocuments(world, tokenizer, PretrainConfig(page_abilities=2))
    rng = random.Random(0)
    kinds = set()
    for _ in range(300):
        kind = rng.choice(pretrain.DOCUMENT_KINDS)
        kinds.add(kind)
        text = pretrain.document(world, documents.facts, kind, documents.config, rng)
        assert "?" not in text and "answer" not in text and "," not in text  # no question, answer or chained clauses
        sentences = text[: -len(" .")].split(" . ")
        assert len(sentences) >= 2  # the probe's single-sentence prompts are never a training input
        for sentence in sentences:
            clauses = parse_rationale(world, sentence + " .", grammar.YES_NO)
            assert clauses is not None and len(clauses) == 1 and clauses[0].kind in ("isa", "rule", "can", "lives",
                                                                                    "colour")  # fmt: skip
            assert judge(world, example, sentence + " .").n_false == 0
    assert kinds == set(pretrain.DOCUMENT_KINDS)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 30, 120])
def test_span_corruption_hides_spans_that_the_target_restores(length: int) -> None:
    ids = list(range(100, 100 + length))
    sentinels = list(range(len(SENTINELS)))
    rng = random.Random(length)
    for _ in range(50):
        source, target = span_corrupt(ids, sentinels, 0.15, 2.0, rng)
        spans, current = {}, None
        for token in target:
            if token in sentinels:
                current = spans.setdefault(token, [])
            else:
                current.append(token)
        restored = list(itertools.chain.from_iterable(spans[t] if t in spans else [t] for t in source))
        assert restored == ids and all(spans.values()) and len(spans) >= 1
        assert len(source) < len(ids) + len(spans)  # something was actually hidden


def test_config_errors_name_the_field() -> None:
    with pytest.raises(PretrainConfigError, match="noise_density"):
        PretrainConfig(noise_density=0.0)
    with pytest.raises(PretrainConfigError, match="max_steps"):
        PretrainConfig(max_steps=0)


class KnowsSomeFacts(pretrain.torch.nn.Module):
    """A stand-in seq2seq model: after the sentinel it writes the right category for the ``known`` entities and the
    other category for the rest, and always "every" for a rule."""

    def __init__(self, world, tokenizer, known: set[str]) -> None:
        super().__init__()
        self.config = type("Config", (), {"decoder_start_token_id": tokenizer.pad_token_id})()
        self.world, self.tokenizer, self.known = world, tokenizer, known

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        logits = pretrain.torch.zeros(*decoder_input_ids.shape, len(self.tokenizer))
        for row, ids in enumerate(input_ids.tolist()):
            words = self.tokenizer.convert_ids_to_tokens(ids)
            entity = next((w for w in words if w in self.world.category_of), None)
            if entity is not None and words[1] == "is":  # "E is a [mask0] ."
                right = self.world.category_of[entity]
                answer = right if entity in self.known else next(c for c in self.world.categories if c != right)
            else:  # "[mask0] C can P ." or "E [mask0] P ."
                answer = "every" if words[0] == SENTINELS[0] else "can"
            logits[row, 1, self.tokenizer.convert_tokens_to_ids(answer)] = 1.0
        return type("Output", (), {"logits": logits})()


def test_probe_scores_exactly_the_facts_the_model_knows() -> None:
    world = generate_world(TINY_WORLD)
    tokenizer = student_tokenizer()
    known = set(world.entities[:4])
    probe = probe_knowledge(KnowsSomeFacts(world, tokenizer, known), tokenizer, world)
    assert probe.category_recall == pytest.approx(4 / 6)
    # "every" is right for the rules that hold: property_rate of them, exactly.
    assert probe.property_recall == pytest.approx(len(world.holds) / (2 * 4))
    assert probe.recall == min(probe.category_recall, probe.property_recall)


def test_gate_fails_loudly_and_cache_is_reused(tmp_path, monkeypatch) -> None:
    path = ensure_pretrained_student(TINY_WORLD, QUICK, TINY_MODEL, student_tokenizer(), tmp_path, progress=False)
    store = path.parent
    assert (store / "COMPLETE").exists() and pretrain_report(store)["pretrain_config"]["max_steps"] == 3
    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    assert model.config.vocab_size == len(student_tokenizer())

    def no_training(*args, **kwargs):
        raise AssertionError("the cached student was pretrained again")

    monkeypatch.setattr(pretrain, "pretrain_student", no_training)
    assert ensure_pretrained_student(TINY_WORLD, QUICK, TINY_MODEL, student_tokenizer(), tmp_path, progress=False) == path
    # Another configuration is another student; so is another vocabulary.
    with pytest.raises(AssertionError, match="pretrained again"):
        ensure_pretrained_student(TINY_WORLD, dataclasses.replace(QUICK, seed=1), TINY_MODEL, student_tokenizer(), tmp_path)
    with pytest.raises(AssertionError, match="pretrained again"):
        ensure_pretrained_student(TINY_WORLD, QUICK, TINY_MODEL, student_tokenizer(TINY_WORLD, "[fresh]"), tmp_path)
    # Three steps teach nothing: with the real threshold the cached student is refused, naming its recall.
    strict = dataclasses.replace(QUICK, probe_threshold=0.95)
    monkeypatch.undo()
    with pytest.raises(StudentNotReadyError, match=r"entity -> category recall \d\.\d{3}"):
        ensure_pretrained_student(TINY_WORLD, strict, TINY_MODEL, student_tokenizer(), tmp_path, progress=False)


def test_an_incomplete_store_is_rebuilt(tmp_path) -> None:
    path = ensure_pretrained_student(TINY_WORLD, QUICK, TINY_MODEL, student_tokenizer(), tmp_path, progress=False)
    (path.parent / "COMPLETE").unlink()
    (path / "config.json").unlink()  # as a killed build might leave it
    again = ensure_pretrained_student(TINY_WORLD, QUICK, TINY_MODEL, student_tokenizer(), tmp_path, progress=False)
    assert again == path and (path / "config.json").exists() and (path.parent / "COMPLETE").exists()


def test_gold_rationales_support_the_answer_they_are_written_for() -> None:
    world, splits = load_toyworld(WorldConfig())
    for example in (ex for split in splits.values() for ex in split):
        gold = judge(world, example, gold_rationale(example, example.answer))
        assert gold.supports(example.answer)
        wrong = perturbed_answer(example, 0)
        counterfactual = judge(world, example, gold_rationale(example, wrong))
        # The chain for the perturbed answer entails it, and states a false rule (it cannot be true).
        assert counterfactual.entailed == wrong and counterfactual.label == "contradicting"


def test_pretraining_rows_are_mixed_into_distillation(tmp_path) -> None:
    """student.pretrain_mix: span-corrupted fact documents join the rationale rows, each its own group, trained on
    every target token (the factual loss)."""
    from scd.io import read_split
    from scd.student.data import StudentDataModule
    from scd.student.objectives import Standard
    from tests.test_student_module import FIXTURES

    world = generate_world(TINY_WORLD)
    tokenizer = student_tokenizer()
    rows = pretrain.pretraining_rows(world, tokenizer, PretrainConfig(), 5, tokenizer.pad_token_id)
    assert len(rows) == 5 and all(r.task == 0 for r in rows)
    sentinel = tokenizer.convert_tokens_to_ids(SENTINELS[0])
    for row in rows:
        assert sentinel in row.input_ids and row.labels[0] == sentinel and row.labels[-1] == tokenizer.eos_token_id
        assert row.decoder_input_ids == [tokenizer.pad_token_id] + row.labels[:-1]
    # Another seed than pretraining's: not the documents the student was pretrained on, in the same order.
    first = next(iter(PretrainDocuments(world, tokenizer, PretrainConfig())))
    assert (rows[0].input_ids, rows[0].labels) != first
    datamodule = StudentDataModule(FIXTURES, tokenizer, "seq2seq", Standard(),
                                   decoder_start_token_id=tokenizer.pad_token_id, extra_train_rows=rows)  # fmt: skip
    datamodule.setup()
    n_questions = len(read_split(FIXTURES, "train"))
    assert len(datamodule.train_groups) == n_questions + 5
    assert datamodule.train_groups[n_questions:] == [[row] for row in rows]


def test_salient_masking_hides_one_fact_word_per_sentence() -> None:
    world = generate_world(WorldConfig())
    facts = pretrain.fact_sentences(world)
    rng = random.Random(0)
    config = PretrainConfig(page_abilities=2)
    for _ in range(100):
        text = pretrain.document(world, facts, "entity", config, rng)
        source, target = pretrain.salient_corrupt(text, SENTINELS, frozenset(world.properties), rng)
        masked = target.split()[1::2]
        assert target.split()[0::2] == list(SENTINELS[: len(masked)]) and len(masked) == text.count(" .")
        assert not set(masked) & (pretrain.GLUE_WORDS | set(world.properties))
        restored = source
        for sentinel, word in zip(SENTINELS, masked):
            restored = restored.replace(sentinel, word, 1)
        assert restored == text


def test_object_masking_completes_each_facts_object_and_only_the_first_sentences() -> None:
    """masking=object is fact completion: the masked word is the object (category, place, colour, polarity), never
    the subject; with masked_sentences=1 the second sentence stays as context."""
    assert [pretrain.object_index(s.split()) for s in
            ("sizop is a batos", "every batos can howl", "no batos can howl", "sizop cannot howl", "sizop is red",
             "sizop lives in the marsh")] == [3, 0, 0, 1, 2, 4]  # fmt: skip
    source, target = pretrain.salient_corrupt("sizop is a batos . no gakos can howl .", SENTINELS, frozenset({"howl"}),
                                              random.Random(0), objects_only=True)  # fmt: skip
    assert (source, target) == ("sizop is a [mask0] . [mask1] gakos can howl .", "[mask0] batos [mask1] no")
    source, target = pretrain.salient_corrupt("sizop is a batos . no gakos can howl .", SENTINELS, frozenset({"howl"}),
                                              random.Random(0), objects_only=True, masked_sentences=1)  # fmt: skip
    assert (source, target) == ("sizop is a [mask0] . no gakos can howl .", "[mask0] batos")


@pytest.mark.parametrize("abilities", [False, True])
def test_fact_documents_draw_each_kind_of_fact_evenly(abilities: bool) -> None:
    world = generate_world(WorldConfig())
    config = PretrainConfig(mix_entity=0, mix_category=0, mix_facts=0, mix_fact=1, fact_context=False,
                            fact_abilities=abilities)  # fmt: skip
    facts = pretrain.fact_sentences(world)
    rng = random.Random(0)
    kinds = []
    for _ in range(600):
        text = pretrain.document(world, facts, "fact", config, rng)
        clauses = parse_rationale(world, text, grammar.YES_NO)
        assert clauses is not None and len(clauses) == 1  # one sentence: nothing but the fact to complete
        kinds.append(clauses[0].kind)
    expected = {"isa", "rule", "can"} if abilities else {"isa", "rule"}
    assert set(kinds) == expected
    assert min(kinds.count(kind) for kind in expected) > 600 / len(expected) * 0.8
