"""Pretrain ToyWorld's T5 student on the world's facts (T5-style masking), probe its knowledge, cache it on disk.

The papers' students are pretrained T5s that hold world knowledge before distillation teaches them to explain with
it. ToyWorld's student gets the same: before distillation it reads the world's facts, and nothing else (no question,
no answer, no rationale), with T5's objective: masked words of a text are replaced by sentinels (``[mask0]``,
``[mask1]``, ...) and the model writes them after their sentinels. ``masking`` picks the words: ``object`` (fact
completion), ``salient`` (a fact-bearing word of each sentence) or ``spans`` (T5's random spans).

The texts are documents of true fact sentences (``grammar``'s "E is a C .", "every C can P .", "no C can P .",
"E lives in the L .", "E is COLOUR ."), drawn at random each step:

- ``entity``: an entity's page: its category, where it lives, its colour and a few rules of its category (the
  sentences in random order). The entity and the rules of its category are read together, as a question asks them;
- ``category``: a few of a category's rules and two of its members;
- ``facts``: two or three unrelated facts, so every fact is also seen out of its page's context;
- ``fact``: one fact to complete (a membership, a rule or, with ``fact_abilities``, an ability), then, with
  ``fact_context``, one of context. Multi-sentence documents stall learning (experiments/toyworld/ATTEMPTS.md).

A knowledge probe then asks every fact from a single masked sentence: "E is a [mask0] ." (entity -> category) and
"[mask0] C can P ." (category -> property), and reads the model's argmax, teacher-forced. That prompt is held out
of every multi-sentence document kind; a one-sentence ``fact`` document has its form. A student below ``probe_threshold`` on either raises
``StudentNotReadyError``: distillation from it would test nothing.

``ensure_pretrained_student`` trains once per configuration into ``cache_dir/toyworld-student-<key>/`` (model and
tokenizer in ``model/``, published whole, then a ``COMPLETE`` marker), under the directory's lock, so parallel jobs
train it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from scd.models import load_model
from scd.student.data import EncodedRow
from scd.io import atomic_write_text, exclusive, publish_directory
from scd.toyworld import grammar
from scd.toyworld.teacher import adamw_warmup_stable_decay, fit_on_cpu
from scd.toyworld.tokenizer import SENTINELS
from scd.toyworld.world import World, WorldConfig, generate_world

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when the text, the objective or the training code changes what a configuration produces
REPORT_FILE = "pretrain.json"
COMPLETE_MARKER = "COMPLETE"
MODEL_DIR = "model"
DOCUMENT_KINDS = ("entity", "category", "facts", "fact")
MASKINGS = ("object", "salient", "spans")
# Words of a fact sentence that carry no fact (the grammar's glue); every other word can be masked by "salient".
GLUE_WORDS = frozenset({"is", "a", "lives", "in", "the", "."})


class PretrainConfigError(ValueError):
    """A PretrainConfig field is out of range."""


class StudentNotReadyError(ValueError):
    """The pretrained student failed its knowledge probe (a ValueError: the run ends with one line naming the
    settings to change)."""


@dataclass(frozen=True)
class PretrainConfig:
    """Span-corruption pretraining of the ToyWorld student."""

    seed: int = 0  # seeds the documents, the masks and the initialization
    max_steps: int = 1500  # optimizer steps
    batch_size: int = 64  # documents per step
    learning_rate: float = 2e-3  # AdamW peak learning rate
    warmup_steps: int = 50  # linear warm-up steps
    decay_fraction: float = 0.3  # last share of the steps, over which the rate decays to 0
    weight_decay: float = 0.01  # AdamW weight decay
    noise_density: float = 0.15  # share of a document's tokens that are masked
    mean_span_length: float = 2.0  # mean length of a masked span, in tokens
    mix_entity: float = 0.5  # weight of entity pages among the documents
    mix_category: float = 0.25  # weight of category pages
    mix_facts: float = 0.25  # weight of short documents of unrelated facts
    mix_fact: float = 0.0  # weight of fact-completion documents: one fact to complete, then one of context
    page_rules: int = 3  # rules of the category on an entity or category page
    page_abilities: int = 0  # sentences "E can P ." / "E cannot P ." on an entity page (facts derived from the rules)
    fact_abilities: bool = False  # "fact" documents also complete abilities ("E can P ." / "E cannot P .")
    masked_sentences: int = 0  # sentences masked per document, the first ones (0: every sentence)
    fact_context: bool = True  # a "fact" document adds one unrelated fact after the one to complete
    # "object": each sentence's object (category, place, colour, polarity), i.e. fact completion; "salient": one
    # fact-bearing word per sentence, subject or object; "spans": T5's random spans
    masking: str = "salient"
    probe_threshold: float = 0.95  # minimum recall (entity -> category and category -> property) for a ready student

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "page_rules"):
            if getattr(self, name) < 1:
                raise PretrainConfigError(f"PretrainConfig.{name} = {getattr(self, name)!r}: must be >= 1")
        if self.learning_rate <= 0:
            raise PretrainConfigError(f"PretrainConfig.learning_rate = {self.learning_rate!r}: must be > 0")
        if self.page_abilities < 0:
            raise PretrainConfigError(f"PretrainConfig.page_abilities = {self.page_abilities!r}: must be >= 0")
        if self.warmup_steps < 0:
            raise PretrainConfigError(f"PretrainConfig.warmup_steps = {self.warmup_steps!r}: must be >= 0")
        for name in ("decay_fraction", "probe_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PretrainConfigError(f"PretrainConfig.{name} = {getattr(self, name)!r}: must be in [0, 1]")
        if not 0.0 < self.noise_density < 1.0:
            raise PretrainConfigError(f"PretrainConfig.noise_density = {self.noise_density!r}: must be in (0, 1)")
        if self.mean_span_length < 1.0:
            raise PretrainConfigError(f"PretrainConfig.mean_span_length = {self.mean_span_length!r}: must be >= 1")
        if self.masking not in MASKINGS:
            raise PretrainConfigError(f"PretrainConfig.masking = {self.masking!r}: must be one of {MASKINGS}")
        if min(self.mix) < 0 or sum(self.mix) <= 0:
            raise PretrainConfigError("PretrainConfig: the mix_* weights must be >= 0 and not all 0")

    @property
    def mix(self) -> tuple[float, float, float, float]:
        """Weights in the order of ``DOCUMENT_KINDS``."""
        return (self.mix_entity, self.mix_category, self.mix_facts, self.mix_fact)


def fact_sentences(world: World) -> dict[str, list[str]]:
    """Every true fact of the world as a sentence, by subject (an entity or a category)."""
    by_subject: dict[str, list[str]] = {}
    for entity in world.entities:
        by_subject[entity] = [
            grammar.sentence(grammar.isa(entity, world.category_of[entity])),
            grammar.sentence(grammar.lives_in(entity, world.location_of[entity])),
            grammar.sentence(grammar.coloured(entity, world.colour_of[entity])),
        ]
    for category in world.categories:
        by_subject[category] = [grammar.sentence(grammar.rule(category, p, world.has(category, p)))
                                for p in world.properties]  # fmt: skip
    return by_subject


def document(world: World, facts: dict[str, list[str]], kind: str, config: PretrainConfig, rng: random.Random) -> str:
    """One pretraining document of ``kind`` (see the module docstring): true fact sentences joined by spaces.

    A page holds ``page_rules`` of its category's rules (and ``page_abilities`` of its entity's abilities), drawn anew
    each time: short documents keep a step cheap, and over the steps every rule is read on every member's page."""
    page_rules = config.page_rules
    if kind == "entity":
        entity = rng.choice(world.entities)
        category = world.category_of[entity]
        sentences = facts[entity] + rng.sample(facts[category], min(page_rules, len(facts[category])))
        abilities = rng.sample(world.properties, min(config.page_abilities, len(world.properties)))
        sentences += [grammar.sentence(grammar.can(entity, p, world.can(entity, p))) for p in abilities]
    elif kind == "category":
        category = rng.choice(world.categories)
        members = rng.sample(world.members[category], min(2, len(world.members[category])))
        sentences = rng.sample(facts[category], min(page_rules, len(facts[category]))) + [facts[e][0] for e in members]
    elif kind == "facts":
        pool = [s for sentences in facts.values() for s in sentences]
        sentences = rng.sample(pool, rng.choice((2, 3)))
    elif kind == "fact":
        # One fact to complete, of a kind drawn uniformly (so that 100 memberships are not drowned by 2,400
        # abilities), then (fact_context) one more fact as context.
        kinds = ("isa", "rule", "ability") if config.fact_abilities else ("isa", "rule")
        drawn = rng.choice(kinds)
        entity, prop = rng.choice(world.entities), rng.choice(world.properties)
        if drawn == "isa":
            first = facts[entity][0]
        elif drawn == "rule":
            first = grammar.sentence(grammar.rule(world.category_of[entity], prop, world.can(entity, prop)))
        else:
            first = grammar.sentence(grammar.can(entity, prop, world.can(entity, prop)))
        if not config.fact_context:
            return first
        return first + " " + rng.choice([s for sentences in facts.values() for s in sentences])
    else:
        raise ValueError(f"unknown document kind {kind!r}: use one of {DOCUMENT_KINDS}")
    rng.shuffle(sentences)
    return " ".join(sentences)


def _composition(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` split at random into ``parts`` positive integers."""
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total])]


def span_corrupt(
    ids: list[int], sentinel_ids: Sequence[int], noise_density: float, mean_span_length: float, rng: random.Random
) -> tuple[list[int], list[int]]:
    """T5's span corruption: the input with each masked span replaced by its sentinel, and the target listing each
    sentinel followed by its span. At least one span, at most one per sentinel; two spans never touch."""
    n_spans = max(1, min(len(sentinel_ids), round(len(ids) * noise_density / mean_span_length), len(ids) // 2))
    n_masked = min(max(n_spans, round(len(ids) * noise_density)), len(ids) - n_spans + 1)
    spans = _composition(n_masked, n_spans, rng)
    # Kept runs before, between and after the spans: the inner ones non-empty, the two outer ones possibly empty.
    runs = _composition(len(ids) - n_masked + 2, n_spans + 1, rng)
    runs[0] -= 1
    runs[-1] -= 1
    source, target, position = [], [], 0
    for sentinel, run, span in zip(sentinel_ids, runs, spans):
        source += ids[position : position + run] + [sentinel]
        target += [sentinel] + ids[position + run : position + run + span]
        position += run + span
    source += ids[position:]
    return source, target


def object_index(sentence: Sequence[str]) -> int:
    """The position of a fact sentence's object: the polarity of "every|no C can P" and "E can|cannot P", else the
    last word ("E is a C", "E lives in the L", "E is COLOUR")."""
    if sentence[0] in ("every", "no"):
        return 0
    if len(sentence) > 1 and sentence[1] in ("can", "cannot"):
        return 1
    return len(sentence) - 1


def salient_corrupt(
    text: str, sentinels: Sequence[str], cues: frozenset[str], rng: random.Random, objects_only: bool = False,
    masked_sentences: int = 0,
) -> tuple[str, str]:
    """Salient-word masking: in each sentence of ``text`` one word that carries its fact (a name, a place, a colour,
    or the polarity "every" / "no" / "can" / "cannot"; never a word of ``cues``, the properties, which a question
    gives) is replaced by the next sentinel; the target
    lists each sentinel and its word. Every masked word is a fact to recall, so the facts are learnt in far fewer
    steps than with random spans (which mostly hide glue words). With ``objects_only`` the masked word is always the
    sentence's object (``object_index``): fact completion, which never asks for a subject that many facts share. With
    ``masked_sentences`` only the first that many sentences are masked; the rest are context."""
    words = text.split()
    ends = [i for i, word in enumerate(words) if word == "."]
    source, target, start = [], [], 0
    for number, end in enumerate(ends[: masked_sentences or len(sentinels)]):
        sentence = words[start:end]
        # "can" is glue in "every C can P" and the polarity in "E can P".
        candidates = [i for i, w in enumerate(sentence)
                      if w not in GLUE_WORDS and w not in cues and not (w == "can" and i == 2)]  # fmt: skip
        masked = object_index(sentence) if objects_only else rng.choice(candidates)
        source += sentence[:masked] + [sentinels[number]] + sentence[masked + 1 :] + ["."]
        target += [sentinels[number], sentence[masked]]
        start = end + 1
    source += words[start:]
    return " ".join(source), " ".join(target)


class PretrainDocuments(IterableDataset):
    """Endless (input, target) pairs: a random document, tokenized and span-corrupted."""

    def __init__(self, world: World, tokenizer: PreTrainedTokenizerBase, config: PretrainConfig) -> None:
        self.world = world
        self.tokenizer = tokenizer
        self.config = config
        self.facts = fact_sentences(world)
        self.sentinel_ids = tokenizer.convert_tokens_to_ids(list(SENTINELS))
        self.properties = frozenset(world.properties)

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        rng = random.Random(f"toyworld-pretrain-{self.config.seed}")
        while True:
            kind = rng.choices(DOCUMENT_KINDS, weights=self.config.mix)[0]
            text = document(self.world, self.facts, kind, self.config, rng)
            if self.config.masking in ("salient", "object"):
                source_text, target_text = salient_corrupt(
                    text, SENTINELS, self.properties, rng, objects_only=self.config.masking == "object",
                    masked_sentences=self.config.masked_sentences,
                )
                source, target = (self.tokenizer(t, add_special_tokens=False)["input_ids"]
                                  for t in (source_text, target_text))  # fmt: skip
            else:
                ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                source, target = span_corrupt(ids, self.sentinel_ids, self.config.noise_density,
                                              self.config.mean_span_length, rng)  # fmt: skip
            yield source + [self.tokenizer.eos_token_id], target + [self.tokenizer.eos_token_id]
def collate_pairs(pairs: list[tuple[list[int], list[int]]], pad_id: int, start_id: int) -> dict[str, torch.Tensor]:
    """Right-padded encoder inputs, decoder inputs (the target shifted right after ``start_id``) and labels."""

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return pad_sequence([torch.tensor(row) for row in rows], batch_first=True, padding_value=value)

    sources, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    return {
        "input_ids": pad(sources, pad_id),
        "attention_mask": pad([[1] * len(s) for s in sources], 0),
        "decoder_input_ids": pad([[start_id] + t[:-1] for t in targets], pad_id),
        "labels": pad(targets, -100),
    }


class Seq2SeqLMModule(pl.LightningModule):
    """Token cross-entropy of a Hugging Face seq2seq model; warm-up / stable / decay learning rate."""

    def __init__(self, model: PreTrainedModel, config: PretrainConfig) -> None:
        super().__init__()
        self.model = model
        self.config = config

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        c = self.config
        return adamw_warmup_stable_decay(self.parameters(), c.learning_rate, c.weight_decay, c.warmup_steps,
                                         c.decay_fraction, c.max_steps)  # fmt: skip


@dataclass(frozen=True)
class KnowledgeProbe:
    category_recall: float  # "E is a [mask0] ." -> the entity's category, over every entity
    property_recall: float  # "[mask0] C can P ." -> every / no, over every (category, property)
    ability_recall: float  # "E [mask0] P ." -> can / cannot, over every (entity, property): reported, not gated
    n_entities: int
    n_rules: int

    @property
    def recall(self) -> float:
        """What the gate reads: the two one-hop facts a rationale states."""
        return min(self.category_recall, self.property_recall)


def probe_prompts(world: World) -> dict[str, list[tuple[str, str]]]:
    """The probe's prompts (one masked sentence each) and the word that fills the mask. They are held out of the
    multi-sentence documents; a one-sentence ``fact`` document (``fact_context: false``) is their form."""
    mask = SENTINELS[0]
    return {
        "category": [(f"{grammar.isa(e, mask)} .", world.category_of[e]) for e in world.entities],
        "property": [(f"{mask} {c} can {p} .", "every" if world.has(c, p) else "no")
                     for c in world.categories for p in world.properties],  # fmt: skip
        "ability": [(f"{e} {mask} {p} .", "can" if world.can(e, p) else "cannot")
                    for e in world.entities for p in world.properties],  # fmt: skip
    }


@torch.no_grad()
def probe_knowledge(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, world: World,
                    batch_size: int = 256) -> KnowledgeProbe:  # fmt: skip
    """Share of probe prompts whose masked word the model writes first after the sentinel (argmax, teacher-forced)."""
    start_id = model.config.decoder_start_token_id
    sentinel_id = tokenizer.convert_tokens_to_ids(SENTINELS[0])
    was_training = model.training
    model.eval()
    recall = {}
    for name, prompts in probe_prompts(world).items():
        hits = 0
        for first in range(0, len(prompts), batch_size):
            chunk = prompts[first : first + batch_size]
            sources = [tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                       for text, _ in chunk]  # fmt: skip
            batch = collate_pairs([(s, [sentinel_id, 0]) for s in sources], tokenizer.pad_token_id, start_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           decoder_input_ids=batch["decoder_input_ids"]).logits  # fmt: skip
            wanted = torch.tensor(tokenizer.convert_tokens_to_ids([word for _, word in chunk]))
            hits += int((logits[:, 1].argmax(-1) == wanted).sum())
        recall[name] = hits / len(prompts)
    model.train(was_training)
    return KnowledgeProbe(recall["category"], recall["property"], recall["ability"], len(world.entities),
                          len(world.categories) * len(world.properties))  # fmt: skip


def pretrain_student(
    world: World,
    tokenizer: PreTrainedTokenizerBase,
    model_init: dict[str, Any],
    config: PretrainConfig,
    log_dir: Path | None = None,
    progress: bool = True,
) -> PreTrainedModel:
    """A randomly initialized seq2seq model (``model_init``: a ``random_init`` dict) pretrained on the world's facts."""
    model = load_model("seq2seq", tokenizer, random_init=model_init, seed=config.seed)
    documents = PretrainDocuments(world, tokenizer, config)
    loader = DataLoader(documents, batch_size=config.batch_size,
                        collate_fn=lambda pairs: collate_pairs(pairs, tokenizer.pad_token_id,
                                                               model.config.decoder_start_token_id))  # fmt: skip
    logger = pl.loggers.CSVLogger(str(log_dir), name="pretrain") if log_dir else False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        fit_on_cpu(Seq2SeqLMModule(model, config), loader, config.max_steps, logger, progress)
    return model.eval()


def cache_key(world_config: WorldConfig, config: PretrainConfig, model_init: dict[str, Any],
              vocabulary: Sequence[str]) -> str:  # fmt: skip
    """A hash of everything that decides the pretrained student: the world's facts, the pretraining, the model and
    the vocabulary (token ids)."""
    payload = {"version": CACHE_VERSION, "world": asdict(world_config), "pretrain": asdict(config),
               "model": model_init, "vocabulary": list(vocabulary)}  # fmt: skip
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _check_ready(report: dict[str, Any], threshold: float, path: Path) -> None:
    probe = report["probe"]
    if min(probe["category_recall"], probe["property_recall"]) >= threshold:
        return
    raise StudentNotReadyError(
        f"pretrained ToyWorld student at {path} failed its knowledge probe: entity -> category recall "
        f"{probe['category_recall']:.3f}, category -> property recall {probe['property_recall']:.3f}, threshold "
        f"{threshold}; pretrain longer (student.pretrain.max_steps) or use a larger student"
    )


def ensure_pretrained_student(
    world_config: WorldConfig,
    config: PretrainConfig,
    model_init: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    cache_dir: str | Path,
    progress: bool = True,
) -> Path:
    """The directory of the pretrained student (``save_pretrained`` model and ``tokenizer``), pretraining it if needed.

    ``tokenizer`` is the one the student will read with (it must hold ``SENTINELS``); its vocabulary is part of the
    key. Raises ``StudentNotReadyError`` when the student (new or cached) is below ``config.probe_threshold``: a
    student that does not know the world's facts cannot be distilled into one that explains with them.
    """
    missing = [s for s in SENTINELS if s not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(f"the student's tokenizer lacks the pretraining sentinels {missing[:3]}")
    world = generate_world(world_config)
    vocabulary = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    store = Path(cache_dir) / f"toyworld-student-{cache_key(world_config, config, model_init, vocabulary)}"
    store.mkdir(parents=True, exist_ok=True)
    with exclusive(store):
        if not (store / COMPLETE_MARKER).exists():
            log.info("Pretraining the ToyWorld student into %s", store)
            started = time.perf_counter()
            model = pretrain_student(world, tokenizer, model_init, config, log_dir=store, progress=progress)
            seconds = time.perf_counter() - started
            probe = probe_knowledge(model, tokenizer, world)

            def save(directory: Path) -> None:
                model.save_pretrained(directory)
                tokenizer.save_pretrained(directory)

            publish_directory(save, store / MODEL_DIR)
            report = {"world_config": asdict(world_config), "pretrain_config": asdict(config), "model": model_init,
                      "train_seconds": round(seconds, 1), "probe": asdict(probe)}  # fmt: skip
            atomic_write_text(store / REPORT_FILE, json.dumps(report, indent=2) + "\n")
            atomic_write_text(store / COMPLETE_MARKER, "")
        else:
            log.info("Reusing the pretrained ToyWorld student in %s", store)
    report = pretrain_report(store)
    if report["pretrain_config"] != asdict(config) or report["world_config"] != asdict(world_config):
        raise RuntimeError(f"{store / REPORT_FILE} records another configuration than its key: remove {store}")
    _check_ready(report, config.probe_threshold, store)
    return store / MODEL_DIR


def pretrain_report(store: str | Path) -> dict[str, Any]:
    """The ``pretrain.json`` of a pretrained student's cache directory: configuration, time and probe."""
    return json.loads((Path(store) / REPORT_FILE).read_text())


def pretraining_rows(world: World, tokenizer: PreTrainedTokenizerBase, config: PretrainConfig, n: int,
                     decoder_start_token_id: int) -> list[EncodedRow]:  # fmt: skip
    """``n`` fresh span-corrupted documents (seeded apart from pretraining's) as student training rows, to mix the
    pretraining objective into distillation."""
    documents = iter(PretrainDocuments(world, tokenizer, dataclasses.replace(config, seed=config.seed + 1)))
    rows = []
    for source, target in itertools.islice(documents, n):
        # Task 0: the objective's factual task, whose loss covers every target token.
        rows.append(EncodedRow(source, target, [decoder_start_token_id] + target[:-1], task=0))
    return rows
