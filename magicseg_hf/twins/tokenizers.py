"""The twins' offline tokenizers, built from the vocabularies shipped with the package.

- a CLIP byte-level BPE (the byte alphabet plus whole-word merges of the shipped vocabularies'
  words), used by the tiny diffusion pipelines, CLIP and causal LM; OWLv2's twin uses the same
  vocabulary with every id shifted up by one, the T5 slots of SD3 and FLUX the same with a longer
  ``model_max_length``;
- a BERT WordPiece with BERT's special ids, for the tiny Grounding DINO and MM-Grounding-DINO.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import BertTokenizer, CLIPTokenizer

# The shipped vocabularies whose words make up both tiny tokenizers' vocabularies.
_CORPUS_FILES = ("lvis.txt", "voc20.txt", "context59.txt", "coco80.txt")
# Words of the prompt templates and counterfactual prompts, beyond the class names.
_CORPUS_EXTRA_WORDS = (
    "a an the of in on at with and or without photo picture image scene there is are no nothing "
    "sitting standing next to near under over beside street room table grass field sky water"
)
# Grounding DINO's text encoder splits phrases at these BERT ids ([CLS], [SEP], ".", "?"): the
# model hard-codes them, so the tiny BERT vocabulary puts those tokens at the same ids.
_BERT_SPECIAL_IDS = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    ".": 1012,
    "?": 1029,
}


# ---- offline tokenizers ------------------------------------------------------------------------
def _corpus_words() -> list[str]:
    """The lower-cased words of the shipped vocabularies and of the prompt templates, sorted."""
    words: set[str] = set()
    folder = resources.files("magicseg_hf") / "vocabularies"
    for name in _CORPUS_FILES:
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            words.update(line.replace("(", " ").replace(")", " ").replace("_", " ").lower().split())
    words.update(_CORPUS_EXTRA_WORDS.split())
    return sorted(words)


@lru_cache(maxsize=1)
def _tiny_clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of the tiny CLIP BPE: the two special tokens, the byte alphabet with and
    without the end-of-word mark, then one merge per new prefix of each corpus word."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for word in _corpus_words():
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        if any(p.replace("</w>", "") not in alphabet for p in pieces):
            continue
        prefix = pieces[0]
        for piece in pieces[1:]:
            pair = (prefix, piece)
            prefix = prefix + piece
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
                vocab.setdefault(prefix, len(vocab))
    return vocab, merges


def _clip_bpe_tokenizer(*, shift_ids: bool, model_max_length: int) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` over the tiny CLIP vocabulary; with ``shift_ids`` every id moves up by
    one and id 0 becomes an unused ``<|padding|>`` token. Padding is ``<|endoftext|>`` either way."""
    from transformers import CLIPTokenizer

    vocab, merges = _tiny_clip_vocab()
    if shift_ids:
        vocab = {"<|padding|>": 0, **{token: index + 1 for token, index in vocab.items()}}
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), pad_token="<|endoftext|>")
    tokenizer.model_max_length = model_max_length
    return tokenizer


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """An offline, deterministic CLIP BPE tokenizer (byte alphabet + whole-word merges of the
    shipped vocabularies), ``model_max_length`` 77. Same vocabulary in every process."""
    return _clip_bpe_tokenizer(shift_ids=False, model_max_length=77)


def tiny_owlv2_tokenizer() -> CLIPTokenizer:
    """The tiny CLIP vocabulary with every id shifted up by one, ``model_max_length`` 16.

    OWLv2 treats a query whose first token id is 0 as padding (``query_mask = input_ids[..., 0] > 0``);
    :func:`tiny_clip_tokenizer` gives ``<|startoftext|>`` id 0, which would mask every query.
    """
    return _clip_bpe_tokenizer(shift_ids=True, model_max_length=16)


@lru_cache(maxsize=1)
def _tiny_bert_vocab() -> tuple[str, ...]:
    """WordPiece vocabulary: BERT's special ids, characters (and ``##`` continuations, so an
    unknown word is spelled out rather than mapped to [UNK]) and the shipped vocabularies' words."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    punctuation = list(",'-()!:;&/\"+")
    words = [*punctuation, *chars, *(f"##{c}" for c in chars), *_corpus_words()]
    reserved = {index: token for token, index in _BERT_SPECIAL_IDS.items()}
    pending = [w for w in dict.fromkeys(words) if w not in _BERT_SPECIAL_IDS]
    size = max(max(reserved) + 1, len(reserved) + len(pending))
    tokens: list[str] = []
    for index in range(size):
        if index in reserved:
            tokens.append(reserved[index])
        else:
            tokens.append(pending.pop(0) if pending else f"[unused{index}]")
    return tuple(tokens)


def tiny_bert_tokenizer() -> BertTokenizer:
    """An offline, deterministic BERT WordPiece tokenizer for the tiny Grounding DINO."""
    from transformers import BertTokenizer

    vocab = {token: index for index, token in enumerate(_tiny_bert_vocab())}
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def tiny_t5_tokenizer() -> CLIPTokenizer:
    """The tokenizer of the tiny twins' T5 slot (SD3's ``tokenizer_3``, FLUX's ``tokenizer_2``):
    the tiny CLIP BPE with ``model_max_length`` 512, T5's longest text. The pipelines only call it,
    so any tokenizer whose ids fit the text encoder works."""
    return _clip_bpe_tokenizer(shift_ids=False, model_max_length=512)


