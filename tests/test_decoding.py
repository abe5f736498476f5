"""Greedy and contrastive decoding: the formula, batching, the shared-prefix cache, stopping, HF equivalence.

The equivalence tests run on a tiny model whose output depends on its prompt (a large init range), and each is shown
to fail when the contrast formula or the padding is deliberately broken.
"""

from __future__ import annotations

import pytest
import torch

from scd.models import load_model, load_tokenizer
from scd.teacher import decoding, strategies
from scd.teacher.decoding import DecodingSettings, decode
from scd.teacher.strategies import ContrastEmpty, ContrastWrong, Greedy, contrastive_scores
from tests.conftest import compose_config, validated
from tests.helpers import NEVER, PROMPT_SENSITIVE_NEOX, TINY_NEOX

LAM = 0.5


def branches(gold, *contrasts):
    """Per-example branch lists for ``decode``: the gold prompt, then each contrast prompt."""
    return [[g, *c] for g, *c in zip(gold, *contrasts)]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("byt5")


@pytest.fixture(scope="module")
def model(tokenizer):
    return load_model("causal", tokenizer, random_init=PROMPT_SENSITIVE_NEOX, seed=0).eval()


@pytest.fixture(scope="module")
def prompts(tokenizer):
    enc = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    prefix = enc("Q: Is ice cold?\nA: The answer is yes. Ice is frozen water.\n\n")
    questions = ["Is fire hot?", "Do fish swim in the sea, usually?", "Can a stone sing?", "Is a cat an animal?"]
    gold = [enc(f"Q: {q}\nA: The answer is {a}.") for q, a in zip(questions, ["yes", "yes", "no", "yes"])]
    wrong = [enc(f"Q: {q}\nA: The answer is {a}.") for q, a in zip(questions, ["no", "no", "yes", "no"])]
    empty = [enc(f"Q: {q}\nA: The answer is .") for q in questions]
    return prefix, gold, wrong, empty


def reference(model, prefix, gold, negative, lam, steps):
    """The definition, computed naively: full forward passes over the whole prompt at every step, one row at a time."""
    out = []
    for g, n in zip(gold, negative):
        pos, neg, ids = prefix + g, prefix + n, []
        for _ in range(steps):
            logp = torch.log_softmax(model(torch.tensor([pos])).logits[0, -1], -1)
            logq = torch.log_softmax(model(torch.tensor([neg])).logits[0, -1], -1)
            token = int((logp - lam * logq).argmax())
            ids.append(token)
            pos, neg = pos + [token], neg + [token]
        out.append(ids)
    return out


def ours(model, tokenizer, prompts, steps=12, **settings):
    prefix, gold, wrong, _ = prompts
    return decode(model, tokenizer, prefix, branches(gold, wrong), ContrastWrong(lam=LAM),
                  DecodingSettings(max_new_tokens=steps, **settings), NEVER)


# Each equivalence: (the project's tokens, the tokens of an independent way to get them).
def vs_definition(model, tokenizer, prompts):
    prefix, gold, wrong, _ = prompts
    return ours(model, tokenizer, prompts), reference(model, prefix, gold, wrong, LAM, 12)


def vs_hf_guidance(model, tokenizer, prompts):
    """HF's guidance with scale 1/(1-λ) and the wrong-answer prompt as negative picks the same argmax."""
    prefix, gold, wrong, _ = prompts
    theirs = []
    for g, w in zip(gold, wrong):
        ids = torch.tensor([prefix + g])
        out = model.generate(ids, max_new_tokens=12, do_sample=False, guidance_scale=1 / (1 - LAM),
                             negative_prompt_ids=torch.tensor([prefix + w]), eos_token_id=None, pad_token_id=0)
        theirs.append(out[0, ids.shape[1]:].tolist())
    return ours(model, tokenizer, prompts), theirs


def batched_vs_alone(model, tokenizer, prompts):
    prefix, gold, wrong, _ = prompts
    alone = [ours(model, tokenizer, (prefix, [g], [w], None))[0] for g, w in zip(gold, wrong)]
    return ours(model, tokenizer, prompts), alone


def shared_prefix_vs_full(model, tokenizer, prompts):
    return ours(model, tokenizer, prompts), ours(model, tokenizer, prompts, shared_prefix=False)


EQUIVALENCES = {f.__name__: f for f in (vs_definition, vs_hf_guidance, batched_vs_alone, shared_prefix_vs_full)}


def break_formula(monkeypatch):
    # The sign of the contrast flipped: log p + λ·log q.
    monkeypatch.setattr(strategies, "contrastive_scores",
                        lambda pos, neg, lam, plausibility=0.0: pos if neg is None else pos + lam * neg)


def break_padding(monkeypatch):
    # Position ids that count the left padding, so a padded row sees other positions than it would alone.
    monkeypatch.setattr(decoding, "padded_positions",
                        lambda visible, offset: offset + torch.arange(visible.shape[1]).expand_as(visible))


def test_the_test_model_reads_its_prompt(model, tokenizer, prompts):
    """Without this the tests below could not fail: every row must decode its own tokens, and contrast must change
    tokens against greedy on every test prompt, with either contrast prompt."""
    prefix, gold, wrong, empty = prompts
    settings = DecodingSettings(max_new_tokens=12)
    greedy = decode(model, tokenizer, prefix, branches(gold), Greedy(), settings, NEVER)
    assert len({tuple(row) for row in greedy}) == len(gold)
    for strategy, negative in ((ContrastWrong(lam=LAM), wrong), (ContrastEmpty(lam=LAM), empty)):
        contrasted = decode(model, tokenizer, prefix, branches(gold, negative), strategy, settings, NEVER)
        assert all(c != g for c, g in zip(contrasted, greedy)), type(strategy).__name__


@pytest.mark.parametrize("equivalence", EQUIVALENCES)
def test_equivalence(model, tokenizer, prompts, equivalence):
    project, independent = EQUIVALENCES[equivalence](model, tokenizer, prompts)
    assert project == independent


@pytest.mark.parametrize(
    "equivalence,breakage",
    [
        ("vs_definition", break_formula), ("vs_definition", break_padding),
        ("vs_hf_guidance", break_formula), ("vs_hf_guidance", break_padding),
        ("batched_vs_alone", break_padding), ("shared_prefix_vs_full", break_padding),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_equivalence_fails_when_the_decoder_is_broken(model, tokenizer, prompts, monkeypatch, equivalence, breakage):
    breakage(monkeypatch)
    project, independent = EQUIVALENCES[equivalence](model, tokenizer, prompts)
    assert project != independent


def test_contrastive_scores_formula():
    pos = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.5, -1.0]]), -1)
    neg = torch.log_softmax(torch.tensor([[3.0, 0.0, 0.5, -1.0]]), -1)
    assert torch.allclose(contrastive_scores(pos, neg, 0.5), pos - 0.5 * neg)
    assert torch.equal(contrastive_scores(pos, neg, 0.0), pos)
    # Token 1 wins the contrast, token 0 wins greedy.
    assert contrastive_scores(pos, neg, 0.9).argmax().item() == 1
    assert pos.argmax().item() == 0


def test_plausibility_filter_excludes_unlikely_tokens():
    pos = torch.log(torch.tensor([[0.70, 0.25, 0.05]]))
    neg = torch.log(torch.tensor([[0.79, 0.20, 0.01]]))
    # Unfiltered, the rare token 2 wins; with the filter (p >= 0.1 * 0.7) it is excluded and token 1 wins.
    assert contrastive_scores(pos, neg, 1.0).argmax().item() == 2
    filtered = contrastive_scores(pos, neg, 1.0, plausibility=0.1)
    assert filtered.argmax().item() == 1
    assert filtered[0, 2] == float("-inf")


@pytest.mark.parametrize(
    "kwargs,message",
    [({"lam": -0.1}, r"lam must be in \[0, 1\], got -0.1"), ({"lam": 1.5}, r"lam must be in \[0, 1\], got 1.5"),
     ({"plausibility": 1.0}, r"plausibility must be in \[0, 1\), got 1.0")],
)
def test_strategy_ranges_are_checked_by_the_class(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ContrastWrong(**kwargs)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["decoding=greedy", "+decoding.lam=0.5"], "decoding: unknown key 'lam' for scd.teacher.strategies.Greedy; "
                                                   "known: name"),
        (["+decoding.lamda=0.5"], "decoding: unknown key 'lamda' for scd.teacher.strategies.ContrastWrong; known: lam, "
                                  "plausibility, name; did you mean decoding.lam?"),
        (["decoding._target_=scd.teacher.strategies.Beam"], "decoding._target_: cannot import "
         "'scd.teacher.strategies.Beam' (module 'scd.teacher.strategies' has no attribute 'Beam')"),
        (["decoding.plausibility=1"], "decoding.plausibility must be in [0, 1), got 1.0"),
        (["decoding_loop.stop_rule=never"], "decoding_loop.stop_rule must be 'chosen' or 'teacher', got 'never'"),
    ],
)
def test_bad_decoding_config_is_one_error_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(ValueError) as error:
        validated(compose_config(overrides, tmp_path, tmp_path))
    assert str(error.value) == message


def test_contrastive_decoding_with_the_empty_prompt_equals_the_definition(model, tokenizer, prompts):
    prefix, gold, _, empty = prompts
    expected = reference(model, prefix, gold, empty, LAM, 12)
    settings = DecodingSettings(max_new_tokens=12)
    assert decode(model, tokenizer, prefix, branches(gold, empty), ContrastEmpty(lam=LAM), settings, NEVER) == expected


@pytest.mark.parametrize("shared_prefix", [True, False])
@pytest.mark.parametrize("merge_branches", [True, False])
def test_cache_and_batching_variants_give_the_same_tokens(model, tokenizer, prompts, shared_prefix, merge_branches):
    prefix, gold, wrong, _ = prompts
    variant = dict(shared_prefix=shared_prefix, merge_branches=merge_branches)
    batched = ours(model, tokenizer, prompts, 16, **variant)
    alone = [ours(model, tokenizer, (prefix, [g], [w], None), 16, **variant)[0] for g, w in zip(gold, wrong)]
    assert batched == alone
    assert batched == ours(model, tokenizer, prompts, 16)


def test_lambda_zero_is_greedy_and_matches_hf_generate(model, tokenizer, prompts):
    prefix, gold, wrong, _ = prompts
    settings = DecodingSettings(max_new_tokens=10)
    with_contrast = decode(model, tokenizer, prefix, branches(gold, wrong), ContrastWrong(lam=0.0), settings, NEVER)
    greedy = decode(model, tokenizer, prefix, branches(gold), Greedy(), settings, NEVER)
    assert with_contrast == greedy
    for row, suffix in enumerate(gold):
        ids = torch.tensor([prefix + suffix])
        out = model.generate(ids, max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
        assert out[0, ids.shape[1]:].tolist() == greedy[row]


@pytest.fixture(scope="module")
def letters():
    """A 26-letter tokenizer and a random model over it: every token decodes to a printable letter."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{chr(97 + i): 3 + i for i in range(26)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("[a-z]"), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    return tok, load_model("causal", tok, random_init=TINY_NEOX, seed=5).eval()


def test_each_row_stops_at_the_separator(letters):
    tok, model = letters
    enc = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    prefix, gold, wrong = enc("abcab"), [enc("q"), enc("rst"), enc("uv")], [enc("w"), enc("xy"), enc("z")]
    settings, contrast = DecodingSettings(max_new_tokens=12), ContrastWrong(lam=0.5)
    full = decode(model, tok, prefix, branches(gold, wrong), contrast, settings, NEVER)
    separator = tok.decode([full[0][4]])
    stopped = decode(model, tok, prefix, branches(gold, wrong), contrast, settings, separator)
    for row, tokens in enumerate(full):
        letters_out = [tok.decode([t]) for t in tokens]
        cut = letters_out.index(separator) if separator in letters_out else len(tokens)
        assert stopped[row] == tokens[:cut]
    assert len(stopped[0]) <= 4


def test_teacher_stop_rule_uses_the_plain_top_token(letters):
    tok, model = letters
    enc = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    prefix, gold, wrong = enc("abcab"), [enc("q")], [enc("w")]
    settings, contrast = DecodingSettings(max_new_tokens=4), ContrastWrong(lam=0.9)
    plain = decode(model, tok, prefix, branches(gold), Greedy(), settings, NEVER)[0]
    contrasted = decode(model, tok, prefix, branches(gold, wrong), contrast, settings, NEVER)[0]
    separator = tok.decode([plain[0]])
    # The teacher's own first choice is the separator: under "teacher" the row stops at once; under "chosen" it
    # stops only if the contrasted choice is the separator too.
    teacher_rule = DecodingSettings(max_new_tokens=4, stop_rule="teacher")
    assert decode(model, tok, prefix, branches(gold, wrong), contrast, teacher_rule, separator) == [[]]
    chosen_rule = decode(model, tok, prefix, branches(gold, wrong), contrast, settings, separator)
    assert chosen_rule == [[]] if contrasted[0] == plain[0] else chosen_rule[0][:1] == contrasted[:1]


def test_shared_prefix_attention_equals_attention_over_the_whole_prompt():
    """Two softmax parts (the one prefix copy, each row's own keys) equal one softmax over prefix + own keys."""
    from types import SimpleNamespace

    from scd.teacher.decoding import shared_prefix_attention

    gen = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, q_len, dim, prefix_len, own_len = 3, 4, 2, 2, 8, 5, 6
    query = torch.randn(rows, heads, q_len, dim, generator=gen)
    key, value = (torch.randn(rows, kv_heads, own_len + 3, dim, generator=gen) for _ in range(2))  # 3 unused slots
    prefix = [(torch.randn(1, kv_heads, prefix_len, dim, generator=gen), torch.randn(1, kv_heads, prefix_len, dim,
                                                                                      generator=gen))]
    visible = torch.rand(rows, 1, q_len, own_len, generator=gen) > 0.4
    out, _ = shared_prefix_attention(SimpleNamespace(layer_idx=0), query, key, value, visible, 0.3, shared_prefix=prefix)

    keys = torch.cat([prefix[0][0].expand(rows, -1, -1, -1), key[:, :, :own_len]], 2).repeat_interleave(2, dim=1)
    values = torch.cat([prefix[0][1].expand(rows, -1, -1, -1), value[:, :, :own_len]], 2).repeat_interleave(2, dim=1)
    mask = torch.cat([torch.ones(rows, 1, q_len, prefix_len, dtype=torch.bool), visible], -1)
    scores = (query @ keys.transpose(-1, -2) * 0.3).masked_fill(~mask, float("-inf"))
    expected = (scores.softmax(-1) @ values).transpose(1, 2)
    assert out.shape == (rows, q_len, heads, dim)
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 40, 700])
def test_attention_in_chunks_equals_attention_at_once(monkeypatch, chunk):
    """Chunks of queries within a row (1, 40) and of whole rows (700 scores: 2 rows of 2 queries) agree with one pass."""
    from types import SimpleNamespace

    gen = torch.Generator().manual_seed(1)
    rows, heads, kv_heads, q_len, dim, prefix_len, own_len = 5, 4, 2, 7, 8, 30, 9
    query = torch.randn(rows, heads, q_len, dim, generator=gen)
    key, value = (torch.randn(rows, kv_heads, own_len + 2, dim, generator=gen) for _ in range(2))
    prefix = [tuple(torch.randn(1, kv_heads, prefix_len, dim, generator=gen) for _ in range(2))]
    visible = torch.rand(rows, 1, q_len, own_len, generator=gen) > 0.3
    layer = SimpleNamespace(layer_idx=0)
    at_once, _ = decoding.shared_prefix_attention(layer, query, key, value, visible, 0.3, shared_prefix=prefix)
    monkeypatch.setattr(decoding, "ATTENTION_CHUNK_SCORES", chunk)
    chunked, _ = decoding.shared_prefix_attention(layer, query, key, value, visible, 0.3, shared_prefix=prefix)
    assert torch.allclose(chunked, at_once, atol=1e-6)


def test_length_groups_keep_one_long_row_from_padding_the_others():
    short_and_long = [12, 9, 350, 11, 10, 349]
    assert decoding.length_groups(short_and_long, min_split=100) == [[0, 1, 3, 4], [2, 5]]
    # Lengths that pad each other by less than half, or a batch too small to matter, stay one group in order.
    assert decoding.length_groups([30, 50, 40, 60], min_split=10) == [[0, 1, 2, 3]]
    assert decoding.length_groups(short_and_long) == [[0, 1, 2, 3, 4, 5]]


def test_a_long_question_in_its_own_group_with_chunked_attention_decodes_the_same_tokens(
    model, tokenizer, prompts, monkeypatch
):
    prefix, gold, wrong, _ = prompts
    enc = lambda text: tokenizer(text, add_special_tokens=False).input_ids  # noqa: E731
    story = "Q: " + "A fox ran past a mill, over a bridge and into the wood. " * 12 + "Is the fox fast?\nA: The answer is"
    gold, wrong = [*gold, enc(story + " yes.")], [*wrong, enc(story + " no.")]
    long_prompts = (prefix, gold, wrong, None)
    alone = [ours(model, tokenizer, (prefix, [g], [w], None))[0] for g, w in zip(gold, wrong)]
    forwards = []
    rows_init = decoding._Rows.__init__
    monkeypatch.setattr(decoding._Rows, "__init__", lambda self, m, kv, suffixes, *rest: (
        forwards.append(len(suffixes)), rows_init(self, m, kv, suffixes, *rest))[1])
    monkeypatch.setattr(decoding, "GROUP_SPLIT_TOKENS", 256)
    monkeypatch.setattr(decoding, "ATTENTION_CHUNK_SCORES", 4096)
    assert ours(model, tokenizer, long_prompts) == alone
    assert sorted(forwards) == [2, 8]  # the long question's two branches ran apart from the short rows


def test_grouped_query_model_gives_the_same_tokens_with_and_without_the_shared_prefix(tokenizer, prompts):
    llama = dict(model_type="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, max_position_embeddings=1024, initializer_range=0.3)
    model = load_model("causal", tokenizer, random_init=llama, seed=4).eval()
    prefix, gold, wrong, _ = prompts
    contrast = ContrastWrong(lam=0.5)
    shared = decode(model, tokenizer, prefix, branches(gold, wrong), contrast, DecodingSettings(max_new_tokens=12), NEVER)
    full = decode(model, tokenizer, prefix, branches(gold, wrong), contrast,
                  DecodingSettings(max_new_tokens=12, shared_prefix=False), NEVER)
    assert shared == full
    assert model.config._attn_implementation == "sdpa"  # decode switches the attention function back


@pytest.mark.parametrize("merge_branches", [True, False])
def test_stopped_rows_leave_the_batch_without_changing_the_others(letters, monkeypatch, merge_branches):
    tok, model = letters
    enc = lambda text: tok(text, add_special_tokens=False).input_ids  # noqa: E731
    prefix = enc("abcab")
    gold = [enc(w) for w in ("q", "rst", "uv", "mn", "opq", "hij", "kl", "efg")]
    wrong = [enc(w) for w in ("w", "xy", "z", "nm", "qpo", "jih", "lk", "gfe")]
    settings, contrast = DecodingSettings(max_new_tokens=12, merge_branches=merge_branches), ContrastWrong(lam=0.5)
    rows = branches(gold, wrong)
    texts = [[tok.decode([t]) for t in row] for row in decode(model, tok, prefix, rows, contrast, settings, NEVER)]
    # The letter that ends the most rows within their first six tokens: rows stop at different steps.
    separator = max("abcdefghijklmnopqrstuvwxyz", key=lambda c: sum(c in text[:6] for text in texts))
    dropped = []
    keep = decoding._Rows.keep
    monkeypatch.setattr(decoding._Rows, "keep", lambda self, rows: (dropped.append(len(rows)), keep(self, rows)))
    stopped = decode(model, tok, prefix, rows, contrast, settings, separator)
    expected = [text[: text.index(separator)] if separator in text else text for text in texts]
    assert [[tok.decode([t]) for t in row] for row in stopped] == expected
    assert dropped, "no row left the batch: the test needs rows that stop early"
    assert len({len(row) for row in stopped}) > 2


def test_stop_checker_agrees_with_decoding_every_tail(tokenizer):
    """The per-token shortcut never misses a stop, also for a separator ending inside a multi-byte character."""
    from itertools import product

    from scd.teacher.decoding import StopChecker

    alphabet = tokenizer("a \n.\u00e9", add_special_tokens=False).input_ids  # é is two byte tokens
    for separator in ("\n\n", ".\u00e9", " "):
        checker = StopChecker(tokenizer, separator)
        stops = 0
        for *history, candidate in product(alphabet, repeat=4):
            if separator in tokenizer.decode(history, skip_special_tokens=True):
                continue  # the row would have stopped earlier
            naive = separator in tokenizer.decode(history + [candidate], skip_special_tokens=True)
            assert checker.hits(history, candidate) == naive, (separator, history, candidate)
            stops += naive
        assert stops > 0
    assert checker.hits([], tokenizer.eos_token_id)


def test_stop_checker_decodes_rows_only_for_tokens_that_could_end_the_separator(tokenizer):
    from scd.teacher.decoding import StopChecker

    calls = []

    class Counting:
        eos_token_id = tokenizer.eos_token_id

        def decode(self, ids, **kwargs):
            calls.append(len(ids))
            return tokenizer.decode(ids, **kwargs)

    checker = StopChecker(Counting(), "\n\n")
    text = tokenizer("the cat sat on the mat", add_special_tokens=False).input_ids
    assert not any(checker.hits(text[:i], text[i]) for i in range(len(text)))
    assert calls == [1] * len(set(text))  # each distinct token decoded once, alone; no row tail decoded
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    assert checker.hits(text + newline, newline[0])


def test_render_query_puts_each_kind_of_contrast_in_the_answer_slot():
    from scd.data.example import Example
    from scd.teacher.prompt import PromptTemplate

    prompt = PromptTemplate("Q: {question} ({choices}) A: {answer}. {rationale}")
    example = Example("e1", "Is ice cold?", ("yes", "no"), 0)
    rendered = [strategies.render_query(prompt, example, answer) for answer in (0, 1, None, "I don't know")]
    assert rendered == ["Q: Is ice cold? (yes | no) A: yes.", "Q: Is ice cold? (yes | no) A: no.",
                        "Q: Is ice cold? (yes | no) A: .", "Q: Is ice cold? (yes | no) A: I don't know."]
