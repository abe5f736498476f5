"""The teacher's batched decoding loop, with the few-shot prefix cached once for all rows, for any decoding strategy.

A strategy (``scd.teacher.strategies``, named by ``conf/decoding/<name>.yaml``) says which contrast prompts each
example needs beside its gold prompt and how their log-probabilities combine into scores; contrastive decoding
(SCOTT, eq. 2) picks, at each step, the token that maximizes

    log p(t | prompt with the gold answer) − λ · log p(t | prompt with a perturbed answer).

Every branch of every example is a row of one batch, and all of an example's branches advance with the chosen token.

Speed comes from these choices (measured in ``benchmarks/``):
- the few-shot demonstrations are identical for every row and branch, so they are encoded once, and their keys
  and values stay a single batch-1 copy: a custom attention function (``shared_prefix_attention``) attends every row's
  queries to that one copy and to the row's own keys, and merges the two softmax parts. Rows neither re-encode nor
  store nor re-read the prefix, which is most of the prompt and, in a decode step, most of the memory traffic;
- each row's own tokens (question and continuation) live in a pre-allocated ``StaticCache``, since a growing cache
  re-concatenates every step;
- all branches run as one batch, or as one forward per branch (``merge_branches``);
- rows that have stopped are dropped from the batch once they are a quarter of it;
- stop checks decode a row's text only when the candidate token could end the separator.
Rows are left-padded between the shared prefix and their own suffix; position ids come from the attention mask, so a
padded row sees the same positions as it would alone. With ``shared_prefix=False`` every row carries its full prompt
through the model's own attention: the reference the shared-prefix path is tested against.

Which path a model takes is decided when it loads (``settings_for_model``): a few tokens through each path show
whether the shared prefix can serve it (sliding windows, soft-capped attention logits and attention sinks it does not
compute; models that compute attention in their own code take no attention function) and whether the full-prompt path
can, if not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel, PreTrainedTokenizerBase, StaticCache

from scd.config import DecodingLoopConfig

if TYPE_CHECKING:
    from scd.teacher.strategies import DecodingStrategy

log = logging.getLogger(__name__)

PrefixKV = list[tuple[torch.Tensor, torch.Tensor]]
SHARED_PREFIX_ATTENTION = "scd_shared_prefix"


class SharedPrefixUnsupported(ValueError):
    """The model's attention needs something that ``shared_prefix_attention`` does not compute."""


@dataclass
class DecodingSettings(DecodingLoopConfig):
    """How the batched loop runs: the ``decoding_loop`` knobs and the token budget (``teacher.max_new_tokens`` or the
    answerer's). Only ``max_new_tokens`` and ``stop_rule`` change output."""

    max_new_tokens: int = 64

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        self.check()


# Attention scores (float32) computed at once. A prefill of long prompts runs in chunks of rows and queries, so its
# peak memory stays bounded (64 MB of scores) instead of growing with rows × length².
ATTENTION_CHUNK_SCORES = 2**24


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor,
    scaling: float,
    dropout: float = 0.0,
    shared_prefix: PrefixKV | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention over a prefix stored once (batch 1) followed by each row's own keys; a transformers attention function.

    ``query`` is ``[rows, heads, q, dim]``; ``key``/``value`` ``[rows, kv_heads, cache_len, dim]`` hold the rows' own
    tokens; ``attention_mask`` is a boolean ``[rows, 1, q, own_len]`` (True: visible) over the first ``own_len`` of
    them; every query sees the whole prefix ``shared_prefix[layer]`` (``[1, kv_heads, prefix_len, dim]``). The result
    is softmax attention over the concatenation, computed as two parts sharing one normalizer, in chunks of at most
    ``ATTENTION_CHUNK_SCORES`` scores.
    """
    if shared_prefix is None:
        raise ValueError(f"the {SHARED_PREFIX_ATTENTION} attention needs the shared_prefix keys and values")
    needs = [name for name, used in (("sliding-window attention", kwargs.get("sliding_window")),
                                     ("soft-capped attention logits", kwargs.get("softcap")),
                                     ("attention sinks", kwargs.get("s_aux") is not None)) if used]  # fmt: skip
    if needs:
        raise SharedPrefixUnsupported(f"its {type(module).__name__} uses {' and '.join(needs)}, which the shared "
                                      "prefix does not compute")  # fmt: skip
    prefix = shared_prefix[module.layer_idx]
    rows, heads, q_len, dim = query.shape
    scores_per_query = heads * (prefix[0].shape[-2] + attention_mask.shape[-1])
    queries = max(1, ATTENTION_CHUNK_SCORES // scores_per_query)  # (row, query) pairs per chunk
    if rows * q_len <= queries:
        return _attend(query, key, value, attention_mask, scaling, prefix), None
    q_step, row_step = min(q_len, queries), max(1, queries // q_len)
    out = query.new_empty(rows, q_len, heads, dim)
    for r in range(0, rows, row_step):
        for q in range(0, q_len, q_step):
            chunk_rows, chunk_queries = slice(r, r + row_step), slice(q, q + q_step)
            out[chunk_rows, chunk_queries] = _attend(
                query[chunk_rows, :, chunk_queries], key[chunk_rows], value[chunk_rows],
                attention_mask[chunk_rows, :, chunk_queries], scaling, prefix,
            )
    return out, None


def _attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor, scaling: float,
    prefix: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """``shared_prefix_attention`` of one chunk, all at once; returns ``[rows, q, heads, dim]``."""
    prefix_keys, prefix_values = prefix
    rows, heads, q_len, dim = query.shape
    kv_heads, own_len = key.shape[1], attention_mask.shape[-1]
    group = heads // kv_heads
    # Query heads that share a key/value head (grouped-query attention) are folded into the query axis.
    q = query.reshape(rows, kv_heads, group * q_len, dim) * scaling
    own = torch.matmul(q, key[:, :, :own_len].transpose(-1, -2)).float()
    own.view(rows, kv_heads, group, q_len, own_len).masked_fill_(~attention_mask[:, :, None], float("-inf"))
    # All rows' queries against the one prefix copy: a [kv_heads, rows·group·q, prefix_len] product reads it once.
    flat = q.transpose(0, 1).reshape(kv_heads, rows * group * q_len, dim)
    shared = torch.matmul(flat, prefix_keys[0].transpose(-1, -2)).float()
    shared_by_row = shared.view(kv_heads, rows, group * q_len, -1).transpose(0, 1)
    # Softmax over both parts with one maximum and one normalizer, in place (these are large in the prefill).
    peak = torch.maximum(shared_by_row.amax(-1, keepdim=True), own.amax(-1, keepdim=True))
    shared_by_row.sub_(peak).exp_()
    own.sub_(peak).exp_()
    total = shared_by_row.sum(-1, keepdim=True) + own.sum(-1, keepdim=True)
    shared_by_row.div_(total)
    own.div_(total)
    out = torch.matmul(own.to(value.dtype), value[:, :, :own_len])
    from_prefix = torch.matmul(shared.to(value.dtype), prefix_values[0])
    out += from_prefix.view(kv_heads, rows, group * q_len, dim).transpose(0, 1)
    return out.view(rows, heads, q_len, dim).transpose(1, 2).contiguous()


AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)


@contextmanager
def _attention_implementation(model: PreTrainedModel, name: str) -> Iterator[None]:
    previous = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def padded_positions(visible: torch.Tensor, offset: int) -> torch.Tensor:
    """Position ids of left-padded rows (``visible``: True on real tokens): a row's first real token is at ``offset``,
    as it would be without padding."""
    return offset + (visible.cumsum(-1) - 1).clamp(min=0)


class _Rows:
    """Rows that share one forward pass per step, their own tokens in one pre-allocated KV cache.

    With ``prefix_kv`` the rows' positions start after the shared prefix and attention goes through
    ``shared_prefix_attention``; without it each row's tokens are its whole prompt.
    """

    def __init__(
        self, model: PreTrainedModel, prefix_kv: PrefixKV | None, suffixes: list[list[int]], pad_id: int,
        max_new_tokens: int,
    ) -> None:
        device = model.device
        rows, width = len(suffixes), max(len(s) for s in suffixes)
        ids = torch.full((rows, width), pad_id, dtype=torch.long, device=device)
        self.mask = torch.zeros((rows, width + max_new_tokens), dtype=torch.bool, device=device)
        for row, suffix in enumerate(suffixes):
            ids[row, width - len(suffix) :] = torch.tensor(suffix, device=device)
            self.mask[row, width - len(suffix) : width] = True
        self.model, self.prefix_kv, self.length = model, prefix_kv, width
        # A model that computes attention in its own code (Bloom's ALiBi, GPT-Neo's local window) reads the key length
        # as the tokens seen so far, which a pre-allocated cache is not: it gets a growing one.
        self.cache = (StaticCache(config=model.config, max_cache_len=self.mask.shape[1])
                      if model._supports_attention_backend else DynamicCache())  # fmt: skip
        offset = 0 if prefix_kv is None else prefix_kv[0][0].shape[-2]
        positions = padded_positions(self.mask[:, :width], offset)
        self.next_position = positions[:, -1] + 1
        causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()
        self.logits = self._forward(ids, positions, causal)

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, causal: torch.Tensor | None) -> torch.Tensor:
        visible = self.mask[:, : self.length]
        if self.prefix_kv is None:
            # The model builds the causal mask from the 2D padding mask.
            extra: dict[str, Any] = {"attention_mask": visible.long()}
        else:
            # A 4D mask is passed through as is: [rows, 1, new tokens, own tokens so far].
            mask = visible[:, None, None, :] if causal is None else visible[:, None, None, :] & causal
            extra = {"attention_mask": mask, "shared_prefix": self.prefix_kv}
        out = self.model(
            input_ids=ids, position_ids=positions, cache=self.cache, use_cache=True, logits_to_keep=1, **extra
        )
        return out.logits[:, -1].float()

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=-1)

    def advance(self, tokens: torch.Tensor) -> None:
        self.mask[:, self.length] = True
        self.length += 1
        self.logits = self._forward(tokens[:, None], self.next_position[:, None], None)
        self.next_position = self.next_position + 1

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every row not in ``rows`` (indices, in order)."""
        self.cache.reorder_cache(rows)
        self.mask, self.next_position, self.logits = self.mask[rows], self.next_position[rows], self.logits[rows]


def encode_prefix(model: PreTrainedModel, prefix_ids: list[int]) -> PrefixKV:
    """Run the shared prompt prefix once; return its per-layer (keys, values), batch size 1."""
    ids = torch.tensor([prefix_ids], dtype=torch.long, device=model.device)
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in out.cache.layers]


class StopChecker:
    """Per-row stopping: eos, or the separator text appearing in the decoded continuation.

    Decoding a row's text every step is the costly part, so each token is classified once: the separator's last
    character is part of the text of the token that completes it, and a token whose own text lacks that character
    cannot complete it. Tokens without text of their own (partial UTF-8 bytes, special tokens) are always checked in
    full, and so is every token when the separator ends in a space, which SentencePiece-style tokenizers only add
    in context.
    """

    TAIL_TOKENS = 16

    def __init__(self, tokenizer: PreTrainedTokenizerBase, separator: str) -> None:
        self.tokenizer = tokenizer
        self.separator = separator
        self.eos_id = tokenizer.eos_token_id
        self._check_every_token = separator[-1] == " "
        self._may_complete: dict[int, bool] = {}

    def _could_complete(self, token: int) -> bool:
        known = self._may_complete.get(token)
        if known is None:
            text = self.tokenizer.decode([token], skip_special_tokens=True)
            known = self._check_every_token or not text or "\ufffd" in text or self.separator[-1] in text
            self._may_complete[token] = known
        return known

    def hits(self, generated: list[int], candidate: int) -> bool:
        if candidate == self.eos_id:
            return True
        if not self._could_complete(candidate):
            return False
        # The separator spans a few tokens at most, so only the tail of the continuation needs decoding.
        tail = generated[-self.TAIL_TOKENS :] + [candidate]
        return self.separator in self.tokenizer.decode(tail, skip_special_tokens=True)


@torch.inference_mode()
def decode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prefix_ids: list[int],
    prompts: Sequence[Sequence[list[int]]],
    strategy: DecodingStrategy,
    settings: DecodingSettings,
    separator: str,
    prefix_kv: PrefixKV | None = None,
) -> list[list[int]]:
    """Decode one batch of examples; returns each example's generated token ids, up to (not including) the stop.

    ``prompts[i]`` holds example ``i``'s branches, each to follow ``prefix_ids``: its gold prompt first, then its
    contrast prompts, as many as its strategy asks for (none: greedy). Every branch advances with the token that
    ``strategy.scores`` picks from all of them. ``prefix_kv`` may pass a precomputed ``encode_prefix(model,
    prefix_ids)`` so callers decoding many batches encode the demonstrations only once.
    """
    shared = settings.shared_prefix and bool(prefix_ids)
    if shared and not model._supports_attention_backend:
        raise ValueError(f"{type(model).__name__} does not take custom attention functions, which decoding's shared "
                         "prefix needs: set decoding_loop.shared_prefix=false")
    if shared:
        prefix_kv = prefix_kv if prefix_kv is not None else encode_prefix(model, prefix_ids)
    else:
        prefix_kv = None
        prompts = [[prefix_ids + branch for branch in branches] for branches in prompts]
    with _attention_implementation(model, SHARED_PREFIX_ATTENTION) if shared else nullcontext():
        return _decode_rows(model, tokenizer, prefix_kv, prompts, strategy, settings, separator)


def _probe(model: PreTrainedModel, shared: bool) -> None:
    """Two steps of one row through a path (shared prefix or full prompt), on token 0: what any failure of the path
    on this model raises."""
    with torch.inference_mode():
        prefix_kv = encode_prefix(model, [0]) if shared else None
        with _attention_implementation(model, SHARED_PREFIX_ATTENTION) if shared else nullcontext():
            _Rows(model, prefix_kv, [[0, 0]], 0, 2).advance(torch.zeros(1, dtype=torch.long, device=model.device))


def shared_prefix_refusal(model: PreTrainedModel) -> str | None:
    """Why the shared prefix cannot serve ``model``, or None when it can."""
    if not model._supports_attention_backend:
        return "it computes attention in its own code and takes no attention function"
    try:
        _probe(model, shared=True)
    except SharedPrefixUnsupported as err:
        return str(err)
    return None


def settings_for_model(model: PreTrainedModel, settings: DecodingSettings) -> DecodingSettings:
    """``settings`` as ``model`` can run them, decided when it loads: with ``shared_prefix`` turned off, and one log
    line saying why, where the shared prefix cannot serve the model; a ValueError naming the model where the
    full-prompt path cannot either."""
    name = type(model).__name__
    if settings.shared_prefix:
        reason = shared_prefix_refusal(model)
        if reason is None:
            return settings
        log.info("Teacher: %s decodes every row with its full prompt, not the shared prefix: %s", name, reason)
        settings = replace(settings, shared_prefix=False)
    try:
        _probe(model, shared=False)
    except Exception as err:  # noqa: BLE001 - whatever the model raises, it cannot be decoded; said in one line
        raise ValueError(f"teacher: {name} cannot be decoded by scd's decoding loop ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); use a teacher of another family") from err
    return settings


# Padded tokens (rows × width) up to which rows always share one forward: below it, one forward per step is fastest.
GROUP_SPLIT_TOKENS = 2**14


def length_groups(lengths: Sequence[int], min_split: int = GROUP_SPLIT_TOKENS) -> list[list[int]]:
    """Rows (indices into ``lengths``) in groups that each run as one forward, so that one long row does not pad every
    other row to its length. Rows are taken shortest first; a group closes before a row that would make it both larger
    than ``min_split`` padded tokens and more than half padding. A group lists its rows in their original order, so
    a batch that stays one group runs exactly as it would unsplit."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for row in sorted(range(len(lengths)), key=lengths.__getitem__):
        padded = (len(current) + 1) * lengths[row]
        if current and padded > min_split and 2 * (used + lengths[row]) < padded:
            groups.append(sorted(current))
            current, used = [], 0
        current.append(row)
        used += lengths[row]
    return [*groups, sorted(current)]


class _Batch:
    """Every branch of every example as rows, split into groups that run as one forward each.

    Rows are ordered branch by branch (every gold prompt, then every first contrast, ...); with ``merge_branches`` all
    rows share a forward, otherwise each branch has its own; either is split by ``length_groups`` where lengths
    differ widely. ``gold``/``contrast`` index the concatenated log-probs of the groups by example slot
    (``contrast`` padded, ``present`` marking the real entries), which restores the rows' order.
    """

    def __init__(
        self, model: PreTrainedModel, prefix_kv: PrefixKV | None, prompts: Sequence[Sequence[list[int]]], pad_id: int,
        settings: DecodingSettings,
    ) -> None:
        widest = max(len(branches) for branches in prompts)
        rows = [(example, branch) for branch in range(widest) for example, branches in enumerate(prompts)
                if branch < len(branches)]
        by_branch = [[i for i, (_, branch) in enumerate(rows) if branch == b] for b in range(widest)]
        forwards = [list(range(len(rows)))] if settings.merge_branches else by_branch
        suffix = [prompts[example][branch] for example, branch in rows]
        self.groups: list[tuple[list[int], _Rows]] = []
        for forward in forwards:
            for local in length_groups([len(suffix[i]) for i in forward], GROUP_SPLIT_TOKENS):
                group = [forward[i] for i in local]
                state = _Rows(model, prefix_kv, [suffix[i] for i in group], pad_id, settings.max_new_tokens)
                self.groups.append((group, state))
        self.rows = rows
        self.active = list(range(len(prompts)))  # the example of each slot still in the batch
        self._index()

    def _index(self) -> None:
        order = [row for group, _ in self.groups for row in group]
        position = {row: i for i, row in enumerate(order)}
        slot = {example: i for i, example in enumerate(self.active)}
        branches: list[list[int]] = [[] for _ in self.active]
        for row, (example, _) in enumerate(self.rows):
            if example in slot:
                branches[slot[example]].append(position[row])
        device = self.groups[0][1].mask.device
        width = max(len(b) for b in branches) - 1
        self.gold = torch.tensor([b[0] for b in branches], device=device)
        self.contrast = torch.tensor([b[1:] + [b[0]] * (width + 1 - len(b)) for b in branches], dtype=torch.long,
                                     device=device).view(len(branches), width)
        self.present = torch.tensor([[k < len(b) - 1 for k in range(width)] for b in branches], dtype=torch.bool,
                                    device=device).view(len(branches), width)
        # The example slot of each position, to feed every row its example's token.
        self.slot_of_position = torch.tensor([slot[self.rows[row][0]] for row in order], device=device)

    def log_probs(self) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.cat([state.log_probs() for _, state in self.groups])
        return logp[self.gold], logp[self.contrast]

    def keep(self, slots: list[int]) -> None:
        """Keep the examples in ``slots`` (in order), dropping every row of the others."""
        kept = {self.active[i] for i in slots}
        groups = []
        for group, state in self.groups:
            local = [i for i, row in enumerate(group) if self.rows[row][0] in kept]
            if local:
                state.keep(torch.tensor(local, device=state.mask.device))
                groups.append(([group[i] for i in local], state))
        self.groups, self.active = groups, [self.active[i] for i in slots]
        self._index()

    def advance(self, tokens: torch.Tensor) -> None:
        """Feed every row its example's token (``tokens`` by slot)."""
        by_position = tokens[self.slot_of_position]
        start = 0
        for group, state in self.groups:
            state.advance(by_position[start : start + len(group)])
            start += len(group)


def _decode_rows(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prefix_kv: PrefixKV | None,
    prompts: Sequence[Sequence[list[int]]], strategy: DecodingStrategy, settings: DecodingSettings, separator: str,
) -> list[list[int]]:
    pad_id = tokenizer.pad_token_id
    batch = _Batch(model, prefix_kv, prompts, pad_id, settings)
    stop = StopChecker(tokenizer, separator)
    generated: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    for _ in range(settings.max_new_tokens):
        logp_gold, logp_contrast = batch.log_probs()
        chosen = strategy.scores(logp_gold, logp_contrast, batch.present).argmax(-1)
        candidates = chosen if settings.stop_rule == "chosen" else logp_gold.argmax(-1)
        for i, (example, token, candidate) in enumerate(zip(batch.active, chosen.tolist(), candidates.tolist())):
            if done[i]:
                continue
            if stop.hits(generated[example], candidate):
                done[i] = True
            else:
                generated[example].append(token)
        if all(done):
            break
        if sum(done) * 4 >= len(done):
            # Stopped rows are a quarter of the batch: copying the caches without them costs less than carrying them.
            keep = [i for i, finished in enumerate(done) if not finished]
            batch.keep(keep)
            done, chosen = [False] * len(keep), chosen[torch.tensor(keep, device=chosen.device)]
        # Stopped rows still in the batch are fed a pad token: their output is fixed and the batch stays rectangular.
        batch.advance(chosen.masked_fill(torch.tensor(done, device=chosen.device), pad_id))
    return generated
