"""The teacher answering by itself in context: the paper's in-context (ICL) baseline, which distillation replaces.

``student=icl_teacher`` puts the frozen teacher where the student would be. Nothing is trained. The teacher sees the
same demonstrations it writes rationales from, rendered with a template that holds both ``{answer}`` and
``{rationale}``:

- answer first (``teacher.template``, the paper's prompt): "Q : ... A : the answer is {answer} . {rationale}". The
  query stops where the answer begins, and the teacher writes answer and rationale. Its rationale comes after its
  answer, so no rationale can change that answer, and the rationale-intervention metrics do not apply.
- rationale first, e.g. "Q : ... A : {rationale} So the answer is {answer} .": the teacher reasons, then answers.
  The student's consistency measures then apply as they do to a student. The answer is re-read after the teacher's
  rationale for the gold answer (oracle), after the teacher's own rationale with tokens replaced (perturbed), and
  after the rationale for the perturbed answer (counterfactual).

Decoding is greedy with the shared-prefix engine (``scd.teacher.decoding.decode``): the demonstrations are encoded once
for all questions. ``InContextAnswerer`` is an ``scd.evaluation.answers.Answerer``:
the answer metrics, LAS and the task's metrics come from it as they do from a student.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from scd.data.records import RationaleRecord
from scd.data.choices import match_choice
from scd.teacher.decoding import DecodingSettings, decode, encode_prefix, settings_for_model
from scd.teacher.prompt import leading_special_ids
from scd.teacher.prompt import Demonstration
from scd.teacher.strategies import Greedy

ANSWER_SLOT, RATIONALE_SLOT = "{answer}", "{rationale}"
# Tokens for an answer written after a given rationale.
ANSWER_TOKENS = 16


@dataclass(frozen=True)
class AnsweringPrompt:
    """Demonstrations and queries for answering: ``template`` holds ``{question}``, optionally ``{choices}``, and
    exactly one ``{answer}`` and one ``{rationale}``, in either order, the second at its end."""

    template: str
    separator: str
    instruction: str = ""

    def __post_init__(self) -> None:
        slots = (self.template.count(ANSWER_SLOT), self.template.count(RATIONALE_SLOT))
        if slots != (1, 1):
            raise ValueError(f"student.in_context.template needs one {ANSWER_SLOT} and one {RATIONALE_SLOT}, got "
                             f"{self.template!r}")  # fmt: skip
        if not self.separator:
            raise ValueError("teacher.separator must not be empty: it is where an answer stops")

    @property
    def answer_first(self) -> bool:
        return self.template.index(ANSWER_SLOT) < self.template.index(RATIONALE_SLOT)

    def _parts(self) -> tuple[str, str, str]:
        """The template before its first slot, between the slots, and after the second."""
        first, second = (ANSWER_SLOT, RATIONALE_SLOT) if self.answer_first else (RATIONALE_SLOT, ANSWER_SLOT)
        head, rest = self.template.split(first)
        between, tail = rest.split(second)
        return head, between, tail

    def prefix(self, demonstrations: Sequence[Demonstration]) -> str:
        shots = [
            self.template.format(question=d.question, choices=" | ".join(d.choices), answer=d.answer,
                                 rationale=d.rationale) + self.separator
            for d in demonstrations
        ]  # fmt: skip
        return (self.instruction + self.separator if self.instruction else "") + "".join(shots)

    def query(self, question: str, choices: Sequence[str]) -> str:
        """The question's part, ending where the teacher starts writing. The template is cut before the data goes in."""
        head = self._parts()[0]
        return head.format(question=question, choices=" | ".join(choices)).rstrip()

    def after_rationale(self, question: str, choices: Sequence[str], rationale: str) -> str:
        """Rationale first only: the query with ``rationale`` written, ending where the answer begins."""
        _, between, _ = self._parts()
        return f"{self.query(question, choices)} {rationale}{between.rstrip()}"

    def parse(self, text: str, choices: Sequence[str]) -> tuple[int | None, str]:
        """(choice index or None, rationale) from what the teacher wrote after the query."""
        _, between, tail = self._parts()
        marker = between.strip()
        if self.answer_first:
            answer_text, found, rationale = text.partition(marker) if marker else (text, "", "")
            return match_choice(answer_text, choices), rationale.strip() if found else ""
        rationale, found, answer_text = text.rpartition(marker) if marker else ("", "", text)
        if not found:
            return None, text.strip()
        if tail.strip():
            answer_text = answer_text.split(tail.strip())[0]
        return match_choice(answer_text, choices), rationale.strip()

    def parse_answer(self, text: str, choices: Sequence[str]) -> int | None:
        """The choice in an answer written after a given rationale (rationale first)."""
        tail = self._parts()[2].strip()
        return match_choice(text.split(tail)[0] if tail else text, choices)


class InContextAnswerer:
    """The frozen teacher answering questions after the demonstrations, greedily, batched over a shared prefix."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: AnsweringPrompt,
        demonstrations: Sequence[Demonstration],
        *,
        max_new_tokens: int,
        batch_size: int,
        show_progress: bool = True,
    ) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.show_progress = show_progress
        self.prefix_ids = leading_special_ids(tokenizer) + tokenizer(
            prompt.prefix(demonstrations), add_special_tokens=False
        ).input_ids
        self._prefix_kv: Any = None
        self.shared_prefix = settings_for_model(model, DecodingSettings()).shared_prefix

    def _continue(self, queries: list[str], max_new_tokens: int, desc: str) -> list[str]:
        settings = DecodingSettings(max_new_tokens=max_new_tokens, shared_prefix=self.shared_prefix)
        if self._prefix_kv is None and self.prefix_ids and self.shared_prefix:
            with torch.inference_mode():
                self._prefix_kv = encode_prefix(self.model, self.prefix_ids)
        texts: list[str] = []
        for start in tqdm(range(0, len(queries), self.batch_size), desc=desc, disable=not self.show_progress):
            batch = queries[start : start + self.batch_size]
            branches = [[self.tokenizer(q, add_special_tokens=False).input_ids] for q in batch]
            with torch.inference_mode():
                generated = decode(self.model, self.tokenizer, self.prefix_ids, branches, Greedy(), settings,
                                   self.prompt.separator, prefix_kv=self._prefix_kv)  # fmt: skip
            texts += [self.tokenizer.decode(ids, skip_special_tokens=True).split(self.prompt.separator)[0]
                      for ids in generated]  # fmt: skip
        return texts

    def predict(self, records: Sequence[RationaleRecord]) -> list[dict[str, Any]]:
        """The teacher's own answer and rationale per record: ``id``, ``output``, ``rationale``, ``predicted``."""
        outputs = self._continue([self.prompt.query(r.question, r.choices) for r in records], self.max_new_tokens,
                                 "in-context answers")  # fmt: skip
        rows = []
        for record, output in zip(records, outputs):
            predicted, rationale = self.prompt.parse(output, record.choices)
            rows.append({"id": record.id, "output": output.strip(), "rationale": rationale, "predicted": predicted})
        return rows

    @property
    def reads_rationales(self) -> bool:
        """Answering first, the teacher's rationale comes after its answer and cannot change it."""
        return not self.prompt.answer_first

    def answers_after(self, records: Sequence[RationaleRecord], rationales: Sequence[str], desc: str) -> list[int | None]:
        """Rationale first: the answer the teacher gives after each given rationale."""
        queries = [self.prompt.after_rationale(r.question, r.choices, text) for r, text in zip(records, rationales)]
        return [self.prompt.parse_answer(text, r.choices)
                for r, text in zip(records, self._continue(queries, ANSWER_TOKENS, desc))]  # fmt: skip

    def answers_after_perturbed(self, records: Sequence[RationaleRecord], rationales: Sequence[str], share: float,
                                rng: np.random.Generator, desc: str) -> list[int | None]:  # fmt: skip
        """Word-level perturbation (the teacher's tokenizer may split a word into pieces that are not words), the
        replacements drawn from the words of the given rationales."""
        vocabulary = sorted({word for text in rationales for word in text.split()} or {"the"})
        return self.answers_after(records, [perturb_words(text, share, vocabulary, rng) for text in rationales], desc)


def perturb_words(text: str, share: float, vocabulary: Sequence[str], rng: np.random.Generator) -> str:
    """``text`` with ``share`` of its words (rounded) replaced by random words of ``vocabulary``."""
    words = text.split()
    if not words:
        return text
    for position in rng.choice(len(words), size=round(share * len(words)), replace=False):
        words[position] = str(rng.choice(vocabulary))
    return " ".join(words)
