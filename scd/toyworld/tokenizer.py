"""A word-level tokenizer over ToyWorld's closed vocabulary, as a ``transformers`` fast tokenizer.

Texts are split into words, task tags such as "[factual]" and single punctuation marks ("yes." is "yes" and ".",
as the pipeline's fixed strings glue punctuation to words), and "\\n" is kept as a token of its own: the teacher
stops generating when the separator "\\n" appears in its decoded continuation. Decoding joins tokens with single spaces, so a text whose
words are separated by single spaces (all of ToyWorld's) decodes back to itself. Case is kept. No special token is
added automatically (as for GPT-2): callers add ``eos_token`` where a target needs one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from scd.toyworld.world import World

PAD, EOS, BOS, UNK = "<pad>", "</s>", "<s>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK)
NEWLINE = "\n"
# A newline, a bracketed tag, a word, or one punctuation mark; everything else (spaces, tabs) is dropped.
_WORD_PATTERN = Regex(r"\n|\[\w+\]|\w+|[^\w\s]")


# Words the teacher's vocabulary holds beyond the world and its prompt: those the student's and simulator's text
# formats used when the ToyWorld configuration was fixed (task tags, "So", the simulator's field names and views),
# with "b", "q" and "r" from the placeholder texts they were then collected from. They keep the teacher's vocabulary,
# and so its weights and rationales, what they were measured to be. A format that needs a new word extends the
# student's tokenizer (``extend_tokenizer``) instead of retraining the teacher.
RESERVED_WORDS: tuple[str, ...] = (
    "So", "[counterfactual]", "[factual]", "choices", "question", "rationale", "view", "x", "e", "xe", ":", ";", "|",
    "b", "q", "r",
)  # fmt: skip


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Split(_WORD_PATTERN, behavior="removed", invert=True)


def words_of(texts: Iterable[str]) -> set[str]:
    """The tokens ``texts`` split into: words, task tags, punctuation marks and newlines."""
    splitter = _pre_tokenizer()
    return {piece for text in texts for piece, _ in splitter.pre_tokenize_str(text)}


def _word_level(tokens: Sequence[str]) -> PreTrainedTokenizerFast:
    """A tokenizer whose ids are the positions in ``tokens`` (the special tokens first)."""
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token=UNK))
    backend.pre_tokenizer = _pre_tokenizer()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        # The default clean-up would glue " ." and " ," to the previous word and break the grammar.
        clean_up_tokenization_spaces=False,
    )


def build_tokenizer(world: World, texts: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A tokenizer for every word of ``world``, of ``texts`` (the teacher's prompt) and ``RESERVED_WORDS``."""
    words = (set(world.vocabulary()) | set(RESERVED_WORDS) | words_of(texts) | {NEWLINE}) - set(SPECIAL_TOKENS)
    return _word_level([*SPECIAL_TOKENS, *sorted(words)])


def extend_tokenizer(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> PreTrainedTokenizerBase:
    """``tokenizer`` with every word of ``texts`` it lacks appended after its own tokens, whose ids do not change;
    ``tokenizer`` itself when it covers them."""
    vocab = tokenizer.get_vocab()
    missing = sorted(words_of(texts) - set(vocab))
    if not missing:
        return tokenizer
    return _word_level([*sorted(vocab, key=vocab.get), *missing])
