"""Greedy and contrastive decoding for the teacher, batched, with a shared-prefix KV cache.

Contrastive decoding (SCOTT, eq. 2) picks, at each step, the token that maximizes

    log p(t | prompt with the gold answer) − λ · log p(t | prompt with a perturbed answer)

where the perturbed prompt carries a wrong answer (``contrast_wrong``) or none (``contrast_empty``). Greedy decoding is the
same loop without the perturbed branch. Both branches advance with the chosen token.

Speed comes from three choices (see ``benchmarks/``):
- the few-shot demonstrations are identical for every row and both branches, so they are encoded once and their KV
  cache is copied into every row, instead of being re-encoded per example and branch;
- the KV cache is pre-allocated (``StaticCache``), since a growing cache re-concatenates every step;
- the two branches run as one batch of 2B rows or as two forwards of B rows (``merge_branches``).
Rows are left-padded between the shared prefix and their own suffix; position ids come from the attention mask, so a
padded row sees the same positions as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StaticCache


def contrastive_scores(
    logp_pos: torch.Tensor, logp_neg: torch.Tensor | None, lam: float, plausibility: float = 0.0
) -> torch.Tensor:
    """Scores ``[B, V]`` whose argmax is the contrastive choice.

    ``logp_pos``/``logp_neg`` are log-probabilities ``[B, V]`` given the gold and the perturbed prompt. With
    ``plausibility > 0``, tokens whose probability under the gold prompt is below ``plausibility`` times the top
    token's are excluded (the adaptive plausibility constraint of Li et al., 2023), which keeps large λ from
    promoting tokens the teacher itself finds implausible.

    >>> pos = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    >>> neg = torch.log(torch.tensor([[0.9, 0.05, 0.05]]))
    >>> contrastive_scores(pos, neg, lam=1.0).argmax(-1).item()
    1
    """
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    scores = logp_pos if logp_neg is None or lam == 0 else logp_pos - lam * logp_neg
    if plausibility > 0:
        floor = logp_pos.max(dim=-1, keepdim=True).values + torch.log(torch.tensor(plausibility))
        scores = scores.masked_fill(logp_pos < floor, float("-inf"))
    return scores


@dataclass
class DecodingSettings:
    """How to decode; see ``conf/decoding/``."""

    lam: float = 0.5
    plausibility: float = 0.0
    max_new_tokens: int = 64
    merge_branches: bool = True
    shared_prefix: bool = True
    # "chosen": a row stops when the chosen (contrasted) token completes the separator;
    # "teacher": when the teacher's own top token under the gold prompt would.
    stop_rule: str = "chosen"

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"decoding.lam must be >= 0, got {self.lam}")
        if not 0 <= self.plausibility < 1:
            raise ValueError(f"decoding.plausibility must be in [0, 1), got {self.plausibility}")
        if self.stop_rule not in ("chosen", "teacher"):
            raise ValueError(f"decoding.stop_rule must be 'chosen' or 'teacher', got {self.stop_rule!r}")


class _Branch:
    """Rows that share one pre-allocated KV cache and one forward pass per step."""

    def __init__(
        self,
        model: PreTrainedModel,
        prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None,
        suffixes: list[list[int]],
        pad_id: int,
        max_new_tokens: int,
    ) -> None:
        device = model.device
        rows = len(suffixes)
        prefix_len = 0 if prefix_kv is None else prefix_kv[0][0].shape[-2]
        width = max(len(s) for s in suffixes)
        ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
        self.mask = torch.zeros((rows, prefix_len + width + max_new_tokens), dtype=torch.long, device=device)
        self.mask[:, :prefix_len] = 1
        for row, suffix in enumerate(suffixes):
            ids[row, width - len(suffix) :] = torch.tensor(suffix, device=device)
            self.mask[row, prefix_len + width - len(suffix) : prefix_len + width] = 1
        self.length = prefix_len + width
        self.model = model
        self.cache = StaticCache(config=model.config, max_cache_len=self.mask.shape[1])
        if prefix_kv is not None:
            for layer, (keys, values) in zip(self.cache.layers, prefix_kv):
                layer.update(keys.expand(rows, -1, -1, -1).contiguous(), values.expand(rows, -1, -1, -1).contiguous())
        positions = (self.mask[:, : self.length].cumsum(-1) - 1).clamp(min=0)
        self.next_position = positions[:, -1] + 1
        self.logits = self._forward(ids, positions[:, prefix_len:])

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=self.mask[:, : self.length],
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1].float()

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=-1)

    def advance(self, tokens: torch.Tensor) -> None:
        self.length += 1
        self.mask[:, self.length - 1] = 1
        self.logits = self._forward(tokens[:, None], self.next_position[:, None])
        self.next_position = self.next_position + 1


def encode_prefix(model: PreTrainedModel, prefix_ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run the shared prompt prefix once; return its per-layer (keys, values), batch size 1."""
    ids = torch.tensor([prefix_ids], dtype=torch.long, device=model.device)
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in out.cache.layers]


class StopChecker:
    """Per-row stopping: eos, or the separator text appearing in the decoded continuation."""

    TAIL_TOKENS = 16

    def __init__(self, tokenizer: PreTrainedTokenizerBase, separator: str) -> None:
        self.tokenizer = tokenizer
        self.separator = separator
        self.eos_id = tokenizer.eos_token_id

    def hits(self, generated: list[int], candidate: int) -> bool:
        if candidate == self.eos_id:
            return True
        # The separator spans a few tokens at most, so only the tail of the continuation needs decoding.
        tail = generated[-self.TAIL_TOKENS :] + [candidate]
        return self.separator in self.tokenizer.decode(tail, skip_special_tokens=True)


@torch.inference_mode()
def decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prefix_ids: list[int],
    gold_suffixes: list[list[int]],
    contrast_suffixes: list[list[int]] | None,
    settings: DecodingSettings,
    separator: str,
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> list[list[int]]:
    """Decode one batch; returns each row's generated token ids, up to (not including) the stop.

    The prompt of row ``i`` is ``prefix_ids + gold_suffixes[i]``; its contrast prompt is ``prefix_ids +
    contrast_suffixes[i]`` (``None`` or λ = 0: plain greedy). ``prefix_kv`` may pass a precomputed
    ``encode_prefix(model, prefix_ids)`` so callers decoding many batches encode the demonstrations only once.
    """
    rows = len(gold_suffixes)
    contrast = contrast_suffixes is not None and settings.lam > 0
    if settings.shared_prefix and prefix_ids:
        prefix_kv = prefix_kv if prefix_kv is not None else encode_prefix(model, prefix_ids)
        prefix = []
    else:
        prefix_kv, prefix = None, prefix_ids
    pad_id = tokenizer.pad_token_id
    gold = [prefix + s for s in gold_suffixes]
    if not contrast:
        branches = [_Branch(model, prefix_kv, gold, pad_id, settings.max_new_tokens)]
    else:
        negative = [prefix + s for s in contrast_suffixes]
        if settings.merge_branches:
            branches = [_Branch(model, prefix_kv, gold + negative, pad_id, settings.max_new_tokens)]
        else:
            branches = [
                _Branch(model, prefix_kv, gold, pad_id, settings.max_new_tokens),
                _Branch(model, prefix_kv, negative, pad_id, settings.max_new_tokens),
            ]

    stop = StopChecker(tokenizer, separator)
    generated: list[list[int]] = [[] for _ in range(rows)]
    done = [False] * rows
    for _ in range(settings.max_new_tokens):
        logp = torch.cat([branch.log_probs() for branch in branches])
        logp_pos = logp[:rows]
        logp_neg = logp[rows:] if contrast else None
        chosen = contrastive_scores(logp_pos, logp_neg, settings.lam, settings.plausibility).argmax(-1)
        stop_candidates = chosen if settings.stop_rule == "chosen" else logp_pos.argmax(-1)
        for row in range(rows):
            if not done[row] and stop.hits(generated[row], int(stop_candidates[row])):
                done[row] = True
            if not done[row]:
                generated[row].append(int(chosen[row]))
        if all(done):
            break
        # Finished rows keep being fed a pad token: their output is already fixed and the batch stays rectangular.
        chosen = chosen.masked_fill(torch.tensor(done, device=chosen.device), pad_id)
        step_tokens = torch.cat([chosen, chosen]) if contrast and settings.merge_branches else chosen
        for branch in branches:
            branch.advance(step_tokens if len(branches) == 1 else chosen)
    return generated
