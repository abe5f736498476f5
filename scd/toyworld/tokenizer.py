"""A word-level tokenizer over ToyWorld's closed vocabulary, as a ``transformers`` fast tokenizer.

Texts are split into words, task tags such as "[factual]" and single punctuation marks ("yes." is "yes" and ".",
as the pipeline's fixed strings glue punctuation to words), and "\\n" is kept as a token of its own: the teacher
stops generating when the separator "\\n" appears in its decoded continuation. Decoding joins tokens with single spaces, so a text whose
words are separated by single spaces (all of ToyWorld's) decodes back to itself. Case is kept. No special token is
added automatically (as for GPT-2): callers add ``eos_token`` where a target needs one.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from scd.toyworld.world import World

PAD, EOS, BOS, UNK = "<pad>", "</s>", "<s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK)
NEWLINE = "\n"
# A newline, a bracketed tag, a word, or one punctuation mark; everything else (spaces, tabs) is dropped.
_WORD_PATTERN = Regex(r"\n|\[\w+\]|\w+|[^\w\s]")


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(_WORD_PATTERN, behavior="removed", invert=True)


def build_tokenizer(world: World, extra_texts: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A tokenizer for every word of ``world`` plus every word of ``extra_texts`` (the pipeline's fixed strings)."""
    splitter = _pre_tokenizer()
    extra_words = {piece for text in extra_texts for piece, _ in splitter.pre_tokenize_str(text)}
    words = sorted((set(world.vocabulary()) | extra_words | {NEWLINE}) - set(SPECIAL_TOKENS))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = splitter
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        # The default clean-up would glue " ." and " ," to the previous word and break the grammar.
        clean_up_tokenization_spaces=False,
    )
