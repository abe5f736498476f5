"""Automatic stand-ins for the paper's human ratings of teacher rationales (keys ``teacher/<metric>``).

- ``supports_answer``: a simulator reading the rationale alone prefers the answer the rationale was written for over
  the other answer of its pair (gold vs. perturbed). Displays name it "judge: supports answer": it is the judge's
  estimate, a different measure from a task's exact checker score where it has one ("checker: supports answer (exact)");
- ``new_info``: share of the rationale's content words that appear neither in the question nor in the choices;
- ``fluency``: the teacher's own perplexity of the rationale after its prompt (lower is more fluent);
- ``vacuity``: share of rationales that only restate the answer, or that are near-identical to the rationale the
  teacher wrote for the other answer of the same question.

Words are lower-cased runs of letters and digits; content words are those not in ``STOP_WORDS``. There is no
stemming, so "fish" and "fishes" are different words.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from scd.data.perturb import other_answer
from scd.data.records import RationaleRecord
from scd.evaluation.simulator import SimulatorRow, score_choices
from scd.teacher.prompt import leading_special_ids

STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each either else few for from further had has have having he
    her here hers herself him himself his how i if in into is it its itself just let me more most my myself neither
    no nor not now of off on once only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through thus to too under until up upon very
    was we were what when where which while who whom whose why will with would yet you your yours yourself yourselves
    one ones s t can't cannot don't doesn't isn't wasn't aren't won't
    """.split()
)
# Words that talk about answering rather than about the question: "the correct answer is X" says nothing more than X.
ANSWER_TALK = frozenset({"answer", "answers", "correct", "choice", "option", "options"})

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``, in order."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """The words of ``text`` that are not stop words, in order."""
    return [word for word in words(text) if word not in STOP_WORDS]


# --- supports_answer -------------------------------------------------------------------------------------------------


def supports_answer(choice_scores: Sequence[ArrayLike], supported: ArrayLike, other: ArrayLike) -> float:
    """Share of rows whose score for choice ``supported[i]`` is strictly above that for ``other[i]``.

    ``choice_scores[i]`` holds one score per choice of row ``i`` (e.g. a simulator's log-likelihoods from the
    rationale alone); a tie does not count as support.

    >>> supports_answer([[-1.0, -3.0], [-2.0, -0.5, -4.0]], supported=[0, 0], other=[1, 1])
    0.5
    """
    supported, other = np.asarray(supported), np.asarray(other)
    if not len(choice_scores) == len(supported) == len(other):
        raise ValueError(
            f"supports_answer: {len(choice_scores)} score rows, {len(supported)} supported answers and "
            f"{len(other)} other answers"
        )
    if not len(choice_scores):
        raise ValueError("supports_answer: no rows")
    wins = [np.asarray(scores)[s] > np.asarray(scores)[o] for scores, s, o in zip(choice_scores, supported, other)]
    return float(np.mean(wins))


def teacher_simulator_rows(records: Sequence[RationaleRecord]) -> list[SimulatorRow]:
    """Simulator rows whose target is the answer each rationale was written for (to train the supports-answer judge)."""
    return [SimulatorRow(r.question, tuple(r.choices), r.rationale, r.rationale_for) for r in records]


def supports_answer_with_simulator(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[RationaleRecord],
    batch_size: int = 16,
) -> float:
    """``supports_answer`` judged by a trained simulator (``scd.evaluation.simulator``) reading the rationale alone."""
    scores = score_choices(model, tokenizer, teacher_simulator_rows(records), "e", batch_size=batch_size)
    others = [other_answer(r.answer, r.perturbed_answer, r.rationale_for) for r in records]
    return supports_answer(scores, [r.rationale_for for r in records], others)


# --- new_info --------------------------------------------------------------------------------------------------------


def new_info_share(rationale: str, question: str, choices: Sequence[str]) -> float:
    """Share of the rationale's content words (occurrences) not found in the question or the choices; 0 if it has none.

    >>> new_info_share("Fish breathe water through gills.", "Where do fish live?", ["water", "sky"])
    0.5
    """
    rationale_words = content_words(rationale)
    if not rationale_words:
        return 0.0
    known = set(words(question)).union(*(words(choice) for choice in choices))
    return sum(word not in known for word in rationale_words) / len(rationale_words)


def new_info(records: Sequence[RationaleRecord]) -> float:
    """Mean ``new_info_share`` over the records."""
    if not records:
        raise ValueError("new_info: no records")
    return float(np.mean([new_info_share(r.rationale, r.question, r.choices) for r in records]))


# --- fluency ---------------------------------------------------------------------------------------------------------


def split_context_rationale(
    tokenizer: PreTrainedTokenizerBase, context: str, rationale: str, separator: str = " "
) -> tuple[list[int], int]:
    """Token ids of ``context + separator + rationale`` and the index of the first rationale token.

    With a fast tokenizer the whole text is tokenized once and the rationale starts at the first token that ends
    after the context, so a token merging the separator with the rationale's first word counts as rationale (as when
    the teacher generated it). Slow tokenizers (ByT5's bytes) tokenize the two parts separately.
    """
    if tokenizer.is_fast:
        encoded = tokenizer(context + separator + rationale, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        start = next((i for i, (_, end) in enumerate(offsets) if end > len(context)), len(ids))
    else:
        head = tokenizer(context + separator, add_special_tokens=False)["input_ids"]
        ids = head + tokenizer(rationale, add_special_tokens=False)["input_ids"]
        start = len(head)
    return ids, start


# A row longer than this (context and rationale, in tokens) is scored alone, its context fed in chunks of this many
# tokens through the model's cache: attention over a whole long prompt at once, in a batch padded to its length,
# takes memory that grows with the square of the length (a 10,000-character question: gigabytes).
LONG_ROW_TOKENS = 1024


def _token_logp(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, first: int
                ) -> torch.Tensor:  # fmt: skip
    """log p of tokens ``first + 1`` onwards of each row given the tokens before them: ``[rows, width - first - 1]``.
    Logits only from position ``first`` on: logits for every position of a long prompt (rows x length x vocabulary)
    would take gigabytes to score a few rationale tokens."""
    width = input_ids.shape[1]
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=width - first).logits
    return torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(
        -1, input_ids[:, first + 1 :].unsqueeze(-1)).squeeze(-1)  # fmt: skip


def _long_row_perplexity(model: PreTrainedModel, ids: list[int], start: int) -> float:
    """Perplexity of ``ids[start:]``, the context before it fed in chunks through a cache."""
    cache = DynamicCache(config=model.config)
    fed = 0
    while start - fed > LONG_ROW_TOKENS:
        piece = torch.tensor([ids[fed : fed + LONG_ROW_TOKENS]], device=model.device)
        model(input_ids=piece, cache=cache, use_cache=True, logits_to_keep=1)
        fed += LONG_ROW_TOKENS
    rest = torch.tensor([ids[fed:]], device=model.device)
    logits = model(input_ids=rest, cache=cache, use_cache=True, logits_to_keep=len(ids) - start + 1).logits
    token_logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, rest[:, start - fed :, None])
    return float(torch.exp(-token_logp.mean()))


@torch.no_grad()
def fluency(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 8,
    separator: str = " ",
) -> float:
    """Mean over rationales of the causal LM's perplexity of each rationale's tokens given its context (the prompt).

    ``pairs`` are (context, rationale); the model sees the special tokens its tokenizer puts before a text, then
    ``context + separator + rationale``. Batches are right-padded; the model runs on its current device. A row longer
    than ``LONG_ROW_TOKENS`` is scored alone, its context in chunks, so memory stays bounded for long questions.
    """
    if not pairs:
        raise ValueError("fluency: no (context, rationale) pairs")
    model.eval()
    lead = leading_special_ids(tokenizer)
    perplexities: list[float] = []
    for begin in range(0, len(pairs), batch_size):
        sequences, starts = [], []
        for context, rationale in pairs[begin : begin + batch_size]:
            ids, start = split_context_rationale(tokenizer, context, rationale, separator)
            ids, start = lead + ids, len(lead) + start
            start = max(start, 1)  # the first token of a sequence has no prediction to score
            if start >= len(ids):
                raise ValueError(
                    f"fluency: rationale {rationale!r} after context {context[-40:]!r} has no token to score"
                )
            sequences.append(ids)
            starts.append(start)
        batch_rows = [row for row, ids in enumerate(sequences) if len(ids) <= LONG_ROW_TOKENS]
        perplexity = {row: _long_row_perplexity(model, sequences[row], starts[row])
                      for row in range(len(sequences)) if row not in batch_rows}  # fmt: skip
        if batch_rows:
            width = max(len(sequences[row]) for row in batch_rows)
            input_ids = torch.full((len(batch_rows), width), tokenizer.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros_like(input_ids)
            scored = torch.zeros_like(input_ids, dtype=torch.bool)
            for index, row in enumerate(batch_rows):
                ids = sequences[row]
                input_ids[index, : len(ids)] = torch.tensor(ids)
                attention_mask[index, : len(ids)] = 1
                scored[index, starts[row] : len(ids)] = True
            input_ids, attention_mask, scored = (t.to(model.device) for t in (input_ids, attention_mask, scored))
            first = min(starts[row] for row in batch_rows) - 1
            token_logp = _token_logp(model, input_ids, attention_mask, first)
            mask = scored[:, first + 1 :]
            mean_nll = -(token_logp * mask).sum(dim=1) / mask.sum(dim=1)
            perplexity.update(zip(batch_rows, torch.exp(mean_nll).tolist()))
        perplexities.extend(perplexity[row] for row in range(len(sequences)))
    return float(np.mean(perplexities))


# --- vacuity ---------------------------------------------------------------------------------------------------------


def restates_answer(rationale: str, answer_text: str, min_content_words: int = 2) -> bool:
    """True if the rationale only restates the answer: with the answer's words and answer talk ("answer", "correct",
    ...) removed, fewer than ``min_content_words`` content words remain (the rest is stop words).

    >>> restates_answer("So the answer is obviously water.", "water"), restates_answer("Fish need water.", "water")
    (True, False)
    """
    removed = set(words(answer_text)) | ANSWER_TALK
    return sum(word not in removed for word in content_words(rationale)) < min_content_words


def jaccard(left: set[str], right: set[str]) -> float:
    """|left ∩ right| / |left ∪ right|; two empty sets are identical (1.0)."""
    union = left | right
    return len(left & right) / len(union) if union else 1.0


def near_identical(rationale: str, twin: str, answer_texts: Sequence[str], threshold: float = 0.8) -> bool:
    """True if two rationales written for different answers share more than ``threshold`` of their content words
    (Jaccard over word sets) once the words of both answers are removed.

    >>> near_identical("Birds can fly, so the sky.", "Birds can fly, so the sea.", ["sky", "sea"])
    True
    """
    removed = set().union(*(words(text) for text in answer_texts))
    first = {word for word in content_words(rationale) if word not in removed}
    second = {word for word in content_words(twin) if word not in removed}
    return jaccard(first, second) > threshold


def vacuity(
    records: Sequence[RationaleRecord],
    counterfactual: Sequence[RationaleRecord] = (),
    *,
    min_content_words: int = 2,
    jaccard_threshold: float = 0.8,
) -> float:
    """Share of ``records`` whose rationale restates its answer or is near-identical to a twin.

    A twin is a rationale for the same question id written for a different answer, found in ``counterfactual``
    (e.g. ``train_counterfactual`` beside ``train``) or in ``records`` itself.
    """
    if not records:
        raise ValueError("vacuity: no records")
    by_id: dict[str, list[RationaleRecord]] = defaultdict(list)
    for record in [*records, *counterfactual]:
        by_id[record.id].append(record)

    def is_vacuous(record: RationaleRecord) -> bool:
        if restates_answer(record.rationale, record.rationale_for_text, min_content_words):
            return True
        twins = [twin for twin in by_id[record.id] if twin.rationale_for != record.rationale_for]
        return any(
            near_identical(record.rationale, twin.rationale, [record.rationale_for_text, twin.rationale_for_text],
                           jaccard_threshold)
            for twin in twins
        )

    return float(np.mean([is_vacuous(record) for record in records]))


def text_metrics(
    records: Sequence[RationaleRecord],
    counterfactual: Sequence[RationaleRecord] = (),
    *,
    min_content_words: int = 2,
    jaccard_threshold: float = 0.8,
) -> dict[str, float]:
    """The model-free teacher metrics for ``metrics.json``: ``teacher/new_info`` and ``teacher/vacuity``."""
    return {
        "teacher/new_info": new_info(records),
        "teacher/vacuity": vacuity(
            records, counterfactual, min_content_words=min_content_words, jaccard_threshold=jaccard_threshold
        ),
    }

