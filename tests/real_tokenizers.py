"""Tokenizers of the presets' families, built in code with the ``tokenizers`` library (no download): T5's
SentencePiece-style Unigram with "▁" word starts, and a Llama-3-style byte-level BPE that puts BOS first."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# Text of the kind the students and teachers see, for training the tokenizers.
CORPUS = [
    "can a blick fly ? choices: yes | no", "[factual] no wug can fly , and a blick is a wug . So the answer is no.",
    "[counterfactual] every wug can fly . So the answer is yes.", "Q: Is ice cold?\nAnswer choices: true | false",
    "A: The answer is true. Ice is frozen water.", "Marie Curie won two Nobel Prizes in Physics and in Chemistry.",
    "The Eiffel Tower stands in Paris, France, not in Rome.", "Penguins are birds that cannot fly.",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,?!|:;-'()[]",
]


def sentencepiece_unigram(corpus: Iterable[str] = CORPUS, vocab_size: int = 200) -> PreTrainedTokenizerFast:
    """T5's kind: a Unigram model over "▁"-marked words, ``</s>`` appended to every text, pad 0, eos 1, unk 2."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>")  # fmt: skip
    tokenizer.train_from_iterator(list(corpus) * 10, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                             special_tokens=[("</s>", 1)])  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def bpe_with_bos(corpus: Iterable[str] = CORPUS, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """Llama-3's kind: byte-level BPE, ``<|begin_of_text|>`` put before every text, no pad token of its own. Its eos is
    Qwen2's ``<|endoftext|>``: a Qwen2 checkpoint's tokenizer loads as Qwen2Tokenizer, which adds that token (as pad)
    where the vocabulary lacks it, past the model's embeddings."""
    bos, eos = "<|begin_of_text|>", "<|endoftext|>"
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[bos, eos],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tokenizer.train_from_iterator(list(corpus) * 10, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                             special_tokens=[(bos, 0)])  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, eos_token=eos)
