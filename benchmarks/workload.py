"""The decoding benchmark's workload: a BPE tokenizer, a few-shot multiple-choice prompt and random-init GPT-NeoX models.

Everything is built in code, offline and seeded. The tokenizer is a byte-level BPE trained on English words (the ones the
prompts use, so they are one token each as in a real BPE) plus pseudo-words that fill the vocabulary to a realistic 32k.
The prompt has the shape of the teacher's CommonsenseQA prompt (``scd.teacher.prompt.PromptTemplate``): 7
demonstrations with five answer choices and a one-to-two sentence rationale, about 400 tokens, shared by every row; each
example adds its own question (about 50 tokens) with the gold or a wrong answer.

The separator is a string a random-init model does not produce (its tokens would have to come out in sequence by
chance), so every row decodes all ``max_new_tokens``; the benchmark checks and reports that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from scd.models import load_model
from scd.teacher.prompt import Demonstration, PromptTemplate

SEPARATOR = "\n<|>\n"
TEMPLATE = PromptTemplate(
    template="Q: {question}\nAnswer choices: {choices}\nA: The answer is {answer}. {rationale}",
    separator=SEPARATOR,
)

# GPT-NeoX shapes (rotary positions, untied input/output embeddings); parameters counted with a 32k vocabulary.
MODEL_SIZES: dict[str, dict[str, Any]] = {
    # 4.2M parameters, almost all in the embeddings.
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256),
    # 58M parameters (the size measured in the project's performance notes).
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, intermediate_size=2048),
    # 0.94B parameters, for a GPU.
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16, intermediate_size=8192),
}

OBJECTS = ["umbrella", "ticket", "blanket", "wallet", "hammer", "letter", "candle", "guitar", "ladder", "basket",
           "bottle", "pillow", "shovel", "kettle", "jacket", "mirror", "bucket", "helmet", "napkin", "violin"]
PLACES = ["kitchen", "garage", "closet", "office", "library", "museum", "station", "garden", "bedroom", "cellar",
          "market", "school", "theater", "hospital", "airport", "drawer", "pocket", "attic", "backpack", "shelf"]
PEOPLE = ["farmer", "teacher", "doctor", "child", "pilot", "baker", "student", "sailor", "painter", "driver"]
VERBS = ["keep", "store", "leave", "find", "use", "put", "carry", "hide", "need", "buy"]
REASONS = ["it stays dry and safe there", "that is where people usually look for it", "it is needed there every day",
           "there is enough room for it there", "it would get lost anywhere else", "it is close to where it is used"]
QUESTIONS = [
    "Where would a {person} most likely {verb} a {obj} after work?",
    "If a {person} wanted to {verb} an old {obj}, where would it go?",
    "A {person} has a new {obj}. Where should the {person} {verb} it?",
]
RATIONALES = [
    "A {person} would {verb} a {obj} in the {place} because {reason}.",
    "People {verb} a {obj} in the {place}, since {reason}.",
]


def _pseudo_words(count: int, rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "ea")]
    words = {"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(count)}
    return sorted(words)


def build_tokenizer(vocab_size: int = 32000, seed: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of ``vocab_size`` tokens (``<pad>`` = 0, ``</s>`` = 1), trained in about 2 s."""
    rng = random.Random(seed)
    # Text like the prompts but without the separator, which stays split into rare byte-level tokens.
    english = []
    for _ in range(400):
        question, choices, answer, rationale = _question(rng)
        english.append(TEMPLATE.render(question, choices, choices[answer], rationale))
    filler = _pseudo_words(40000, rng)

    def corpus():
        yield from english
        for rank, word in enumerate(filler):  # Zipf-like counts, so frequent pseudo-words merge first
            yield " ".join([word] * (1 + 2000 // (rank + 1)))

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "</s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>")


@dataclass(frozen=True)
class Workload:
    """Token ids of the shared prefix and of each example's gold and wrong-answer query."""

    prefix_ids: list[int]
    gold_suffixes: list[list[int]]
    wrong_suffixes: list[list[int]]
    separator: str

    def full_prompts(self, suffixes: list[list[int]]) -> list[list[int]]:
        return [self.prefix_ids + s for s in suffixes]

    @property
    def mean_prompt_tokens(self) -> float:
        return len(self.prefix_ids) + sum(map(len, self.gold_suffixes)) / len(self.gold_suffixes)


def _question(rng: random.Random) -> tuple[str, tuple[str, ...], int, str]:
    words = dict(person=rng.choice(PEOPLE), verb=rng.choice(VERBS), obj=rng.choice(OBJECTS), reason=rng.choice(REASONS))
    choices = tuple(rng.sample(PLACES, 5))
    answer = rng.randrange(5)
    question = rng.choice(QUESTIONS).format(**words)
    rationale = rng.choice(RATIONALES).format(place=choices[answer], **words)
    return question, choices, answer, rationale


def few_shot_workload(tokenizer: PreTrainedTokenizerFast, n_examples: int, n_demonstrations: int = 7,
                      seed: int = 0) -> Workload:
    """``n_examples`` questions behind ``n_demonstrations`` demonstrations; the wrong answer is another choice."""
    rng = random.Random(seed)
    demos = []
    for _ in range(n_demonstrations):
        question, choices, answer, rationale = _question(rng)
        demos.append(Demonstration(question, choices, choices[answer], rationale))
    encode = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    gold, wrong = [], []
    for _ in range(n_examples):
        question, choices, answer, _ = _question(rng)
        other = rng.choice([i for i in range(len(choices)) if i != answer])
        gold.append(encode(TEMPLATE.query(question, choices, choices[answer])))
        wrong.append(encode(TEMPLATE.query(question, choices, choices[other])))
    return Workload(encode(TEMPLATE.prefix(demos)), gold, wrong, SEPARATOR)


def build_model(size: str, tokenizer: PreTrainedTokenizerFast, device: str, dtype: str, seed: int = 0,
                max_positions: int = 2048) -> PreTrainedModel:
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}: use one of {sorted(MODEL_SIZES)}")
    config = dict(model_type="gpt_neox", max_position_embeddings=max_positions, **MODEL_SIZES[size])
    model = load_model("causal", tokenizer, random_init=config, dtype=dtype, seed=seed)
    return model.to(torch.device(device)).eval()
