"""The teacher's in-context prompt: an instruction and k demonstrations (shared by every row), then the question.

A demonstration renders ``template`` with ``question``, ``choices``, ``answer`` and ``rationale``; the query renders it up
to ``{rationale}``, so the teacher continues with the rationale for the answer it was given. Everything before the
query is identical for every example and both contrast branches: that is the shared prefix the decoder caches once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from scd.data.example import Example

RATIONALE_SLOT = "{rationale}"


@dataclass(frozen=True)
class Demonstration:
    question: str
    choices: tuple[str, ...]
    answer: str
    rationale: str


@dataclass(frozen=True)
class PromptTemplate:
    template: str = "Q: {question}\nAnswer choices: {choices}\nA: The answer is {answer}. {rationale}"
    separator: str = "\n\n"
    instruction: str = ""

    def __post_init__(self) -> None:
        if not self.template.rstrip().endswith(RATIONALE_SLOT) or self.template.count(RATIONALE_SLOT) != 1:
            raise ValueError(f"teacher.template must end with {RATIONALE_SLOT}, its one rationale slot, got "
                             f"{self.template!r}")
        if not self.separator:
            raise ValueError("teacher.separator must not be empty: it is where a rationale stops")

    def render(self, question: str, choices: Sequence[str], answer: str, rationale: str) -> str:
        # One pass of str.format over the template: text from the data is inserted, never read as a placeholder.
        return self.template.format(question=question, choices=" | ".join(choices), answer=answer, rationale=rationale)

    def prefix(self, demonstrations: Sequence[Demonstration]) -> str:
        """Instruction and demonstrations, each followed by the separator."""
        shots = [self.render(d.question, d.choices, d.answer, d.rationale) + self.separator for d in demonstrations]
        head = self.instruction + self.separator if self.instruction else ""
        return head + "".join(shots)

    def query(self, question: str, choices: Sequence[str], answer: str) -> str:
        """The example's own part, ending where the rationale begins. An empty ``answer`` is contrast_empty's prompt."""
        # The template is cut at its rationale slot before the data goes in, so a question that contains the text
        # "{rationale}" cannot cut the prompt.
        head = self.template[: self.template.index(RATIONALE_SLOT)]
        return head.format(question=question, choices=" | ".join(choices), answer=answer).rstrip()


def pick_demonstrations(train: Sequence[Example], k: int, seed: int) -> list[Demonstration]:
    """k training examples that have a human rationale, chosen with ``seed``."""
    with_rationale = [ex for ex in train if ex.rationale]
    if len(with_rationale) < k:
        raise ValueError(
            f"teacher.num_demonstrations={k} but the train split has only {len(with_rationale)} examples with a human "
            "rationale; lower it or give teacher.demonstrations in config"
        )
    chosen = random.Random(seed).sample(with_rationale, k)
    return [Demonstration(ex.question, ex.choices, ex.answer_text, ex.rationale or "") for ex in chosen]


def leading_special_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special tokens a tokenizer puts before a text (a BOS for Llama-style models, nothing for ByT5/GPT-NeoX)."""
    plain = tokenizer("a", add_special_tokens=False).input_ids
    full = tokenizer("a").input_ids
    return full[: full.index(plain[0])] if plain and plain[0] in full else []
