"""What the project's contrastive decoding is compared with: the original per-example loop and Hugging Face ``generate``.

All three see full prompts (demonstrations + question) for every row and branch, as research code does; each returns
the generated token ids of every row, cut at eos, so the benchmark can check they pick the same tokens as the project.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from workload import Workload


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _cut_at_eos(rows: torch.Tensor, eos_id: int | None) -> list[list[int]]:
    out = []
    for row in rows.tolist():
        out.append(row[: row.index(eos_id)] if eos_id in row else row)
    return out


@torch.inference_mode()
def per_example_loop(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, workload: Workload, lam: float, max_new_tokens: int
) -> list[list[int]]:
    """(a) The original recipe: one example at a time, a forward pass per branch and step, each with its own cache.

    Only the last position's logits are computed (``logits_to_keep=1``), which the original does not do: this keeps
    the baseline from looking slower than it has to be.
    """
    device = model.device
    generated = []
    for gold, wrong in zip(workload.full_prompts(workload.gold_suffixes), workload.full_prompts(workload.wrong_suffixes)):
        caches = DynamicCache(config=model.config), DynamicCache(config=model.config)
        inputs = torch.tensor([gold], device=device), torch.tensor([wrong], device=device)
        tokens: list[int] = []
        for _ in range(max_new_tokens):
            logp, logq = (
                torch.log_softmax(model(input_ids=x, cache=c, use_cache=True, logits_to_keep=1).logits[0, -1].float(), -1)
                for x, c in zip(inputs, caches)
            )
            token = int((logp - lam * logq).argmax())
            if token == tokenizer.eos_token_id or workload.separator in tokenizer.decode(tokens[-16:] + [token]):
                break
            tokens.append(token)
            inputs = (torch.tensor([[token]], device=device),) * 2
        generated.append(tokens)
    return generated


@torch.inference_mode()
def hf_generate(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, workload: Workload, lam: float | None,
    max_new_tokens: int,
) -> list[list[int]]:
    """(b) with ``lam``: HF classifier-free guidance, scale 1/(1−λ), the wrong-answer prompt as the negative prompt;
    (c) with ``lam=None``: plain greedy ``generate``. Batched, left-padded full prompts, HF's own stop-string check."""
    device = model.device
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    ids, mask = left_pad(workload.full_prompts(workload.gold_suffixes), pad_id, device)
    guidance = {}
    if lam is not None:
        # HF's guidance processor takes a batch of negative prompts with their own mask; it runs them as a second
        # forward per step without position ids, which rotary embeddings make harmless (only offsets matter).
        neg_ids, neg_mask = left_pad(workload.full_prompts(workload.wrong_suffixes), pad_id, device)
        guidance = dict(guidance_scale=1 / (1 - lam), negative_prompt_ids=neg_ids, negative_prompt_attention_mask=neg_mask)
    out = model.generate(
        input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_id,
        eos_token_id=eos_id, stop_strings=[workload.separator], tokenizer=tokenizer, **guidance,
    )
    return _cut_at_eos(out[:, ids.shape[1] :], eos_id)
