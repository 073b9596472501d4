"""Counterfactual prompts: the same scene, without the target classes.

What counts as a mention of a class (bare names, plurals, possessives, whole words only) is
decided in :mod:`magicseg_hf.generation.names`, the same matcher the prompt backends use to
check that a prompt names its classes; this module decides what to remove around each mention.

Removal policy (:func:`counterfactual_prompt`)
----------------------------------------------
* A mention that heads a noun phrase is removed with the words that belong only to it: the
  adjectives directly before it (a list of common colours/sizes/textures/... plus ``-ful``,
  ``-ous``, ``-ish``, ``-less``, ``-ive``, ``-able`` words), at most one other modifier when a
  determiner, preposition, conjunction, punctuation or the start of the text anchors it
  (``"a police dog"``, ``"with kitchen knives"``), the determiners/numerals before those (``a``, ``the``,
  ``two``, ``his``, ``several`` ...) and a quantity phrase (``"a herd of"``, ``"a pair of"``).
  Words after the noun are kept, except as below.
* A hyphenated compound that contains the class is removed whole. When the class is the
  compound's modifier (``"a cat-shaped pillow"``) only the compound goes (``"a pillow"``, with
  ``a``/``an`` fixed); when the class is its head (``"a robo-dog"``) it is treated as a noun.
* A possessive mention becomes ``the``: ``"a photo of my dog's bowl"`` -> ``"a photo of the
  bowl"``.
* The gap left behind is tidied so the sentence stays readable: mentions joined only by
  ``and``/``or``/``with``/commas/prepositions collapse into one gap; a conjunction next to the
  gap is dropped (``"a cat and a dog"`` -> ``"a dog"``); a preposition left with no object
  is dropped (``"a dog sitting next to a cat on a sofa"`` -> ``"a dog sitting on a sofa"``,
  ``"a photo of a cat"`` -> ``"a photo"``); when the removed noun was the subject of a
  participle (``-ing``/``-ed``) at the start of a clause or after a preposition, the participle
  and its preposition go too (``"a photo of a cat sleeping on a sofa"`` -> ``"a photo of a
  sofa"``); a passive participle whose object was removed goes (``"a patio, surrounded by
  plants."`` -> ``"a patio."``);
  a clause-initial locative preposition left in front is dropped (``"a cat on a sofa"`` ->
  ``"a sofa"``); commas never double up or dangle; runs of spaces collapse to one; a
  capital at the start of a sentence is carried to the new first word.
* A prompt that mentions none of the classes is returned unchanged, character for character.
* A prompt that consists only of the classes (``"two black cats"``) becomes ``""``: the
  caller decides what an empty scene prompt means (Stable Diffusion treats ``""`` as the
  unconditional prompt).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from magicseg_hf.generation.names import Mention, as_class_list, find_mentions, indefinite_article

logger = logging.getLogger(__name__)

__all__ = ["counterfactual_prompt", "replace_mentions"]

# --------------------------------------------------------------------------------------------
# The released code's swap (``paper`` mode)
# --------------------------------------------------------------------------------------------


def replace_mentions(prompt: str, classes: Sequence[str] | str, replacement: str) -> str:
    """Replace every mention of the classes by ``replacement`` (the released code's "nothing" swap).

    Same matching as :func:`~magicseg_hf.generation.names.mentions`; a possessive ending is kept (``"dog's"`` -> ``"nothing's"``).
    """
    out = []
    last = 0
    for start, end, possessive in find_mentions(prompt, as_class_list(classes)):
        noun_end = end
        if possessive:
            noun_end = end - (2 if prompt[end - 1] in "sS" else 1)
        out.append(prompt[last:start])
        out.append(replacement)
        out.append(prompt[noun_end:end])
        last = end
    out.append(prompt[last:])
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Word lists for the removal policy
# --------------------------------------------------------------------------------------------

_DETERMINERS = frozenset(
    """a an the this these those some several many few no each every another any both all
    my your his her its our their one two three four five six seven eight nine ten eleven twelve
    thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty
    hundred dozen dozens single lone pair couple""".split()
)
_COLLECTIVES = frozenset(
    """pair couple group herd flock pack bunch family litter school swarm team crowd lot lots
    dozen dozens number handful colony pod troop gaggle pride cluster set row line pile stack
    heap collection variety assortment plenty""".split()
)
_ADJECTIVES = frozenset(
    """black white brown gray grey red orange yellow green blue purple pink golden silver beige
    tan cream ginger tabby calico spotted striped speckled dark light pale bright colorful colourful
    multicolored small little tiny large big huge giant enormous massive tall short long wide narrow
    thick thin fat slim round square young old elderly baby adult cute adorable happy playful
    sleepy curious wet dry clean dirty shiny rusty vintage antique modern new used broken wooden
    metal metallic plastic glass ceramic leather fluffy furry fuzzy hairy smooth rough soft hard
    wild domestic stray pet toy miniature fresh ripe rotten sliced whole half empty full open
    closed red-and-white black-and-white detailed realistic beautiful pretty ugly fancy elegant
    simple plain ornate worn weathered polished parked moving running sleeping sitting standing
    lying resting hungry lazy fierce friendly majestic proud lonely single lone fluffy furry fuzzy
    hairy shiny rusty dusty muddy sandy snowy rainy sunny cloudy foggy dirty tiny happy sleepy curly
    spotty chubby scruffy skinny shaggy sturdy glossy leafy grassy rocky silky creamy juicy crispy
    crunchy spicy salty heavy pretty ugly empty messy cozy cosy shabby fancy""".split()
)
_ADJECTIVE_SUFFIXES = ("ful", "ous", "ish", "less", "ive", "able", "ible")
_CONJUNCTIONS = frozenset("and or & plus nor".split())
_PREPOSITIONS: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(p.split())
            for p in (
                "in front of|on top of|in the middle of|at the foot of|next to|close to|near to|"
                "along with|together with|as well as|in between|out of|away from|instead of|"
                "on|in|at|with|beside|besides|near|by|under|behind|above|below|over|of|from|into|"
                "onto|beneath|among|amongst|between|against|across|around|inside|outside|"
                "alongside|toward|towards|through|for|to|without|underneath|atop|upon|within|up|"
                "past|amid|amidst|beyond|like|including|holding|carrying|wearing|chasing|riding|"
                "and with"
            ).split("|")
        ),
        key=len,
        reverse=True,
    )
)
# Prepositions dropped after a clause-initial gap:
# "a cat on a sofa" -> "a sofa", "a cat next to a dog" -> "a dog", "a bowl of cherries" -> "cherries".
_LOCATIVES = frozenset(
    {
        ("on",), ("in",), ("at",), ("with",), ("beside",), ("near",), ("by",), ("under",),
        ("behind",), ("inside",), ("atop",), ("next", "to"), ("close", "to"), ("on", "top", "of"),
        ("in", "front", "of"), ("alongside",), ("among",), ("beneath",), ("underneath",),
        ("along", "with"), ("together", "with"), ("against",), ("above",), ("below",), ("over",),
        ("of",),
    }
)
_PARTICIPLE_PREPOSITIONS = frozenset(p for p in _PREPOSITIONS if p[0] not in {"holding", "carrying", "wearing",
                                                                             "chasing", "riding", "like",
                                                                             "including", "and"})
_ING_NOUNS = frozenset(
    """thing something nothing anything everything building painting ceiling clothing king ring
    wing spring string evening morning ping sing swing sling bring lighting railing frosting icing
    stuffing pudding dumpling wedding sibling herring bedding awning stocking earring dressing
    seasoning topping filling landing setting ceiling sing""".split()
)
_ED_NOT_PARTICIPLES = frozenset("bed shed sled seed weed reed feed speed breed steed hundred sacred".split())
_AUXILIARIES = frozenset("is are was were".split())
_SENTENCE_PUNCT = frozenset(".;:!?(")
_CLOSING_PUNCT = frozenset(",.;:!?)")

# --------------------------------------------------------------------------------------------
# Tokens and the removal pass
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


@dataclass
class _Tok:
    text: str
    sep: str  # whitespace before the token in the output
    kind: str  # "w" word, "p" punctuation, "h" gap left by a removal
    cap: bool = False  # for gaps: the removed words began a sentence with a capital
    fix_article: bool = False  # for "a"/"an": recheck against the next word

    @property
    def low(self) -> str:
        return self.text.lower()


def _is_word(tok: _Tok | None) -> bool:
    return tok is not None and tok.kind == "w"


def _is_modifier(word: str) -> bool:
    w = word.lower()
    if w in _ADJECTIVES:
        return True
    if "-" in w:  # "black-and-white", "long-haired": compound modifiers
        return w.endswith(("ed", "ing")) or all(part in _ADJECTIVES or part in {"and"} for part in w.split("-"))
    return w.endswith(_ADJECTIVE_SUFFIXES) and len(w) > 5


def _is_function_word(word: str) -> bool:
    w = word.lower()
    return (
        w in _DETERMINERS
        or w in _CONJUNCTIONS
        or w in _AUXILIARIES
        or (w,) in _PREPOSITIONS
        or w in {"that", "which", "who", "it", "they", "he", "she", "we", "i", "you", "there", "here"}
    )


_POSTNOMINAL_ADJECTIVES = frozenset(
    "visible present shown depicted pictured featured displayed seen prominent centered".split()
)


def _is_determiner(tok: _Tok) -> bool:
    return tok.kind == "w" and (tok.low in _DETERMINERS or tok.text.isdigit())


def _pop_noun_phrase_start(out: list[_Tok]) -> tuple[str, str] | None:
    """Remove from the end of ``out`` the modifiers and determiners of the noun about to be removed.

    Returns ``(text, sep)`` of the first removed token, or ``None`` when nothing was removed.
    """
    i = len(out)

    def skip_modifiers(j: int) -> int:
        while j > 0 and out[j - 1].kind == "w" and _is_modifier(out[j - 1].text):
            j -= 1
        return j

    i = skip_modifiers(i)
    # One other modifier ("police" in "a police dog", "with kitchen knives") when a determiner,
    # a preposition, a conjunction, punctuation or the start of the text anchors it.
    if i > 0 and out[i - 1].kind == "w" and not _is_function_word(out[i - 1].text) and not out[i - 1].text.isdigit():
        k = skip_modifiers(i - 1)
        if k == 0 or out[k - 1].kind == "p" or _is_determiner(out[k - 1]) or _is_conj(out[k - 1]) or _prep_ending_at(out, k - 1):
            i = k
    while i > 0 and _is_determiner(out[i - 1]):
        i -= 1
    # A quantity phrase: "a (large) herd of", "lots of".
    if i >= 2 and out[i - 1].low == "of" and out[i - 2].kind == "w" and out[i - 2].low in _COLLECTIVES:
        i = skip_modifiers(i - 2)
        while i > 0 and _is_determiner(out[i - 1]):
            i -= 1
    if i == len(out):
        return None
    first = (out[i].text, out[i].sep)
    del out[i:]
    return first


def _remove_mentions(prompt: str, spans: list[Mention]) -> list[_Tok]:
    """Tokenize ``prompt`` and replace each mention (with its noun phrase start) by a gap token."""
    tokens: list[tuple[str, int, int, str]] = []
    last = 0
    for m in _TOKEN.finditer(prompt):
        tokens.append((m.group(), m.start(), m.end(), prompt[last : m.start()]))
        last = m.end()
    out: list[_Tok] = []
    si = 0
    ti = 0
    while ti < len(tokens):
        text, _, end, sep = tokens[ti]
        if si >= len(spans) or spans[si][0] >= end:
            out.append(_Tok(text, sep, "w" if (text[0].isalnum() or text[0] == "_") else "p"))
            ti += 1
            continue
        _, m_end, possessive = spans[si]
        si += 1
        # Every token the mention touches goes: a hyphenated compound goes whole.
        tj = ti
        while tj < len(tokens) and tokens[tj][1] < m_end:
            tj += 1
        while si < len(spans) and spans[si][0] < tokens[tj - 1][2]:  # another mention in the same compound
            si += 1
        last_text, last_start = tokens[tj - 1][0], tokens[tj - 1][1]
        tail = last_text[m_end - last_start :]
        ti = tj
        # A post-nominal adjective of the removed noun goes with it ("a dog clearly visible in ...").
        k = ti
        while k < len(tokens) and tokens[k][0].isalpha() and tokens[k][0].lower().endswith("ly"):
            k += 1
        if k < len(tokens) and tokens[k][0].lower() in _POSTNOMINAL_ADJECTIVES and not tail:
            ti = k + 1
        if tail.startswith("-"):
            # The class modified another noun ("a cat-shaped pillow"): only the compound goes.
            if out and out[-1].low in {"a", "an"}:
                out[-1].fix_article = True
            continue
        popped = _pop_noun_phrase_start(out)
        first_text, gap_sep = popped if popped is not None else (text, sep)
        sentence_start = not out or (out[-1].kind == "p" and out[-1].text in ".!?")
        cap = sentence_start and first_text[:1].isupper()
        if possessive:  # "my dog's bowl" -> "the bowl"
            out.append(_Tok("The" if cap else "the", gap_sep, "w"))
        else:
            out.append(_Tok("", gap_sep, "h", cap=cap))
    return out


def _prep_ending_at(toks: list[_Tok], i: int) -> int:
    """Length of the preposition phrase whose last word is ``toks[i]`` (0 if none)."""
    for phrase in _PREPOSITIONS:
        n = len(phrase)
        if i - n + 1 < 0:
            continue
        window = toks[i - n + 1 : i + 1]
        if all(t.kind == "w" and t.low == w for t, w in zip(window, phrase)):
            return n
    return 0


def _prep_starting_at(toks: list[_Tok], i: int, phrases: Iterable[tuple[str, ...]] = _PREPOSITIONS) -> int:
    """Length of the preposition phrase starting at ``toks[i]`` (0 if none)."""
    for phrase in sorted(phrases, key=len, reverse=True):
        n = len(phrase)
        window = toks[i : i + n]
        if len(window) == n and all(t.kind == "w" and t.low == w for t, w in zip(window, phrase)):
            return n
    return 0


def _is_conj(tok: _Tok | None) -> bool:
    return tok is not None and tok.kind in "wp" and tok.low in _CONJUNCTIONS


def _is_past_participle(tok: _Tok | None) -> bool:
    return (
        tok is not None
        and tok.kind == "w"
        and tok.low.endswith("ed")
        and len(tok.low) > 4
        and tok.low not in _ED_NOT_PARTICIPLES
        and "-" not in tok.low
    )


def _is_participle(tok: _Tok | None) -> bool:
    """An ``-ing`` or ``-ed`` verb form ("sleeping", "parked"), not a noun like "ceiling"."""
    if tok is None or tok.kind != "w" or "-" in tok.low:
        return False
    if tok.low.endswith("ing"):
        return len(tok.low) > 4 and tok.low not in _ING_NOUNS
    return _is_past_participle(tok)


def _clause_start(toks: list[_Tok], h: int) -> bool:
    return h == 0 or (toks[h - 1].kind == "p" and toks[h - 1].text in _SENTENCE_PUNCT | {","})


def _joiner(tok: _Tok) -> bool:
    return tok.kind == "p" and tok.text == "," or _is_conj(tok) or tok.low in {"with", "and", "or"}


def _tidy_once(toks: list[_Tok]) -> bool:
    """Apply the first applicable tidy rule around a gap; return whether anything changed."""
    for h, tok in enumerate(toks):
        if tok.kind != "h":
            continue
        left = toks[h - 1] if h > 0 else None
        right = toks[h + 1] if h + 1 < len(toks) else None
        # 1. Gaps joined only by commas/conjunctions/prepositions collapse into one.
        j = h + 1
        while j < len(toks) and toks[j].kind != "h" and (_joiner(toks[j]) or _prep_starting_at(toks, j)):
            j += _prep_starting_at(toks, j) or 1
        if j < len(toks) and toks[j].kind == "h":
            tok.cap = tok.cap or toks[j].cap
            del toks[h + 1 : j + 1]
            return True
        # 2. The gap was a later conjunct: "a dog and <gap>" -> "a dog".
        if _is_conj(left):
            del toks[h - 1]
            tok.sep = left.sep if left is not None else tok.sep
            return True
        # 3. The gap was a first conjunct: "<gap> and a dog" -> "a dog".
        if _is_conj(right):
            del toks[h + 1]
            return True
        # 4. A participle whose subject was removed, at a clause start or after a preposition:
        #    "a photo of <gap> sleeping on a sofa" -> "a photo of <gap> a sofa".
        k = h + 1
        while k < len(toks) and toks[k].kind == "w" and toks[k].low.endswith("ly") and _is_participle(
            toks[k + 1] if k + 1 < len(toks) else None
        ):
            k += 1  # an adverb before the participle: "<gap> quietly sleeping on a sofa"
        if k < len(toks) and toks[k].kind == "w" and toks[k].low in _AUXILIARIES and _is_participle(
            toks[k + 1] if k + 1 < len(toks) else None
        ):
            k += 1
        if _is_participle(toks[k] if k < len(toks) else None) and (
            _clause_start(toks, h) or _prep_ending_at(toks, h - 1)
        ):
            end = k + 1
            while end < len(toks) and toks[end].kind == "w" and toks[end].low.endswith("ly"):
                end += 1
            end += _prep_starting_at(toks, end, _PARTICIPLE_PREPOSITIONS)
            del toks[h + 1 : end]
            return True
        # 5. A preposition left without an object: "sitting next to <gap> on a sofa".
        n = _prep_ending_at(toks, h - 1) if h > 0 else 0
        if n and (
            right is None
            or (right.kind == "p" and right.text in _CLOSING_PUNCT)
            or _is_conj(right)
            or right.kind == "h"
            or _prep_starting_at(toks, h + 1)
        ):
            tok.sep = toks[h - n].sep
            del toks[h - n : h]
            # ... and a passive participle that needed it: "a patio, surrounded by <gap>."
            if h - n > 0 and _is_past_participle(toks[h - n - 1]) and (
                right is None or (right.kind == "p" and right.text in _CLOSING_PUNCT)
            ):
                tok.sep = toks[h - n - 1].sep
                del toks[h - n - 1]
            return True
        # 6. A clause-initial gap followed by a locative: "<gap> on a sofa" -> "a sofa".
        if _clause_start(toks, h):
            n = _prep_starting_at(toks, h + 1, _LOCATIVES)
            after = toks[h + 1 + n] if h + 1 + n < len(toks) else None
            if n and after is not None and after.kind == "w":
                del toks[h + 1 : h + 1 + n]
                return True
        # 7. Commas: never doubled, never dangling.
        if left is not None and left.kind == "p" and left.text == "," and (
            right is None or (right.kind == "p" and right.text in _CLOSING_PUNCT)
        ):
            tok.sep = left.sep
            del toks[h - 1]
            return True
        if right is not None and right.kind == "p" and right.text in {",", ";", ":"} and (
            left is None or (left.kind == "p" and left.text in _SENTENCE_PUNCT)
        ):
            del toks[h + 1]
            return True
        # 8. Empty brackets.
        if left is not None and right is not None and left.text == "(" and right.text == ")":
            del toks[h + 1]
            del toks[h - 1]
            return True
    return False


def _render(toks: list[_Tok]) -> str:
    """Join tokens back into text: gaps vanish, capitals carry over, a/an agree, spaces collapse."""
    words: list[_Tok] = []
    pending_sep: str | None = None
    pending_cap = False
    for tok in toks:
        if tok.kind == "h":
            if pending_sep is None:
                pending_sep = tok.sep
            pending_cap = pending_cap or tok.cap
            continue
        if pending_sep is not None:
            if tok.kind == "p" and tok.text in _CLOSING_PUNCT:
                tok.sep = ""
            elif not tok.sep and words and words[-1].text not in "(\"'“‘":
                tok.sep = pending_sep or " "
            elif tok.sep and not words:
                tok.sep = ""
            pending_sep = None
            if words and words[-1].low in {"a", "an"}:
                words[-1].fix_article = True
        if pending_cap and tok.kind == "w":
            tok.text = tok.text[:1].upper() + tok.text[1:]
            pending_cap = False
        words.append(tok)
    # Nothing is left to start a sentence with punctuation or a conjunction.
    while words and (words[0].kind == "p" and words[0].text in _CLOSING_PUNCT or _is_conj(words[0])):
        words.pop(0)
    for i, tok in enumerate(words[:-1]):
        if tok.fix_article and words[i + 1].kind == "w":
            article = indefinite_article(words[i + 1].text)
            tok.text = article.capitalize() if tok.text[:1].isupper() else article
    text = "".join(t.sep + t.text for t in words)
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"\s+([,.;:!?)])", r"\1", text)
    return text.strip()


def _counterfactual_once(prompt: str, classes: list[str]) -> str:
    spans = find_mentions(prompt, classes)
    if not spans:
        return prompt
    toks = _remove_mentions(prompt, spans)
    for _ in range(10 * len(toks) + 10):
        if not _tidy_once(toks):
            break
    result = _render(toks)
    if prompt[:1].isupper() and result[:1].islower():
        result = result[:1].upper() + result[1:]
    return result


def counterfactual_prompt(prompt: str, classes: Sequence[str] | str) -> str:
    """``prompt`` with every mention of every class removed, tidied to stay readable.

    ``classes`` are vocabulary lines or bare names (a single string counts as one class).
    See the module docstring for the matching rules and the removal policy.

    >>> counterfactual_prompt("a photo of a tabby cat sleeping next to a dog on a sunlit porch", ["cat"])
    'a photo of a dog on a sunlit porch'
    >>> counterfactual_prompt("A cat and a dog on a sofa.", ["cat", "dog"])
    'A sofa.'
    """
    names = as_class_list(classes)
    result = prompt
    for _ in range(4):  # removing words can bring two others together ("hot cat dog")
        new = _counterfactual_once(result, names)
        if new == result:
            break
        result = new
    spans = find_mentions(result, names)
    while spans:  # pathological names (a class called "the"): plain removal until none is left
        for start, end, _ in reversed(spans):
            result = result[:start] + " " + result[end:]
        result = re.sub(r"[ \t]{2,}", " ", result).strip()
        spans = find_mentions(result, names)
    if result != prompt:
        logger.debug("counterfactual prompt: %r -> %r", prompt, result)
    return result
