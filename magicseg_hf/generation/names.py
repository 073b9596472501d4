"""Class-name matching: the one answer to "does this text name that class", and a/an.

Used by the prompt backends (reject a description that omits a class), the counterfactual prompt
(remove every mention) and the class-set sampler (never put "dog" and "hot dog" together), so all
three agree on what a mention is.

Matching rules
--------------
* The class is first reduced to its bare name (:func:`bare_name`): an LVIS qualifier in
  parentheses is dropped (``"bow (weapon)"`` -> ``"bow"``) and underscores become spaces.
* Case is ignored. Words of a multi-word name may be joined by spaces, hyphens, underscores or
  nothing: ``"traffic light"`` matches ``"Traffic-light"``, ``"traffic_lights"``,
  ``"trafficlight"``.
* The last word may be plural: regular (cats, buses, boxes, cherries, tomatoes), ``f``/``fe``
  -> ``ves`` (knives, leaves, wolves), irregular (mice, oxen, geese, people, children, feet,
  teeth, men, women, dice, cacti ...) and uninflected (fish, sheep, deer ...). A name that
  is itself a ``-ves``/``-ies`` plural also matches its singular (``"shelves"`` <-> ``"shelf"``).
* A possessive is part of the mention: ``"dog's"``, ``"dogs'"``, ``"dog’s"``.
* Only whole words match: the character before and after the mention must not be a letter,
  digit or underscore, so ``"cat"`` never matches ``"category"``, ``"concatenate"`` or
  ``"bobcat"``, ``"hat"`` never matches ``"that"`` or ``"hatbox"``, ``"bus"`` never matches
  ``"busy"``. A hyphen is a word boundary: ``"cat-shaped"`` and ``"hot-dog"`` both mention
  ``"cat"``/``"dog"`` (known limitation: so does the separate word ``dog`` in ``"hot dog"``).

Articles
--------
:func:`indefinite_article` decides "a" or "an" for a word by its first letter, with the usual
exceptions by sound ("an hour", "a unicorn", "a one-eyed cat").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import NamedTuple

from magicseg_hf.errors import InputError

__all__ = [
    "Mention",
    "as_class_list",
    "bare_name",
    "find_mentions",
    "indefinite_article",
    "mention_pattern",
    "mention_spans",
    "mentions",
    "plural_forms",
]

# --------------------------------------------------------------------------------------------
# Bare names and word forms
# --------------------------------------------------------------------------------------------

_QUALIFIER = re.compile(r"\s*\([^()]*\)")
_NAME_WORD_SPLIT = re.compile(r"[\s_\-]+")


def bare_name(vocabulary_line: str) -> str:
    """The class name used in text: qualifier in parentheses dropped, underscores -> spaces.

    ``"bow (weapon)"`` -> ``"bow"``, ``"traffic_light"`` -> ``"traffic light"``,
    ``"  Dixie cup "`` -> ``"Dixie cup"``. A line that is nothing but a qualifier keeps the
    qualifier's text (``"(weapon)"`` -> ``"weapon"``).
    """
    line = vocabulary_line.replace("_", " ")
    name = _QUALIFIER.sub("", line)
    if not name.strip():
        name = line.replace("(", " ").replace(")", " ")
    return " ".join(name.split())


# Irregular plurals that also apply at the end of compounds (fireman, dormouse, grandchild).
_IRREGULAR_SUFFIXES: dict[str, tuple[str, ...]] = {
    "man": ("men",),
    "person": ("people", "persons"),
    "child": ("children",),
    "mouse": ("mice",),
    "louse": ("lice",),
    "goose": ("geese",),
    "tooth": ("teeth",),
    "foot": ("feet",),
}
# Irregular plurals of whole words only ("box" is not "boxen").
_IRREGULAR_WORDS: dict[str, tuple[str, ...]] = {
    "ox": ("oxen",),
    "die": ("dice",),
    "penny": ("pence",),
    "cactus": ("cacti",),
    "fungus": ("fungi",),
    "octopus": ("octopi",),
    "hippopotamus": ("hippopotami",),
    "radius": ("radii",),
    "bacterium": ("bacteria",),
    "criterion": ("criteria",),
    "phenomenon": ("phenomena",),
    "index": ("indices",),
    "matrix": ("matrices",),
    "appendix": ("appendices",),
    "vertebra": ("vertebrae",),
    "larva": ("larvae",),
    "antenna": ("antennae",),
    "quiz": ("quizzes",),
    "half": ("halves",),
    "calf": ("calves",),
}
# Same form in the plural (the regular forms are still accepted: "fishes").
_UNINFLECTED = frozenset(
    "fish sheep deer moose bison salmon trout swine aircraft spacecraft hovercraft watercraft "
    "shrimp squid series species offspring cod tuna elk buffalo cattle corps chassis".split()
)
_VOWELS = set("aeiou")


def plural_forms(word: str) -> frozenset[str]:
    """Every form of ``word`` (lowercase) that counts as a mention: itself and its plurals.

    Over-generating is harmless (``"buss"`` never occurs in a prompt); every form still has to
    match a whole word.
    """
    w = word.lower()
    forms = {w}
    if not w.isalpha():
        return frozenset(forms)
    forms.add(w + "s")
    if w.endswith(("s", "x", "z", "ch", "sh")):
        forms.add(w + "es")
    if w.endswith(("s", "z")) and len(w) > 1 and w[-2] in _VOWELS:
        forms.add(w + w[-1] + "es")  # busses, quizzes
    if w.endswith("y") and len(w) > 1 and w[-2] not in _VOWELS:
        forms.add(w[:-1] + "ies")
    if w.endswith("o"):
        forms.add(w + "es")
    if w.endswith("f"):
        forms.add(w[:-1] + "ves")
    if w.endswith("fe"):
        forms.add(w[:-2] + "ves")
    if w.endswith("us"):
        forms.add(w[:-2] + "i")
    if w.endswith("is"):
        forms.add(w[:-2] + "es")
    if w.endswith("um"):
        forms.add(w[:-2] + "a")
    if w.endswith(("ex", "ix")):
        forms.add(w[:-2] + "ices")
    if w.endswith("a"):
        forms.add(w + "e")
    # A name given in the plural also matches its singular (shelves -> shelf, cherries -> cherry).
    if w.endswith("ves") and len(w) > 4:
        forms.update({w[:-3] + "f", w[:-3] + "fe"})
    if w.endswith("ies") and len(w) > 4:
        forms.add(w[:-3] + "y")
    for singular, plurals in _IRREGULAR_SUFFIXES.items():
        if w.endswith(singular):
            stem = w[: len(w) - len(singular)]
            forms.update(stem + p for p in plurals)
        for p in plurals:  # a name given in an irregular plural ("people") matches the singular
            if w.endswith(p):
                forms.add(w[: len(w) - len(p)] + singular)
    forms.update(_IRREGULAR_WORDS.get(w, ()))
    for singular, plurals in _IRREGULAR_WORDS.items():
        if w in plurals:
            forms.add(singular)
    if w in _UNINFLECTED:
        forms.add(w)
    return frozenset(forms)


_SEPARATOR = r"[\s_\-]*"
_POSSESSIVE = r"(?P<poss>['’]s(?!\w)|(?<=[sS])['’](?!\w))?"


@lru_cache(maxsize=8192)
def mention_pattern(class_name: str) -> re.Pattern[str]:
    """The compiled, case-insensitive pattern that finds mentions of ``class_name``.

    ``class_name`` may be a vocabulary line (its bare name is used). The match's ``poss``
    group holds a possessive ending (``'s``, ``'``), if any.

    Raises:
        InputError: if the class name has no words.
    """
    words = [w for w in _NAME_WORD_SPLIT.split(bare_name(class_name).lower()) if w]
    if not words:
        raise InputError(f"class name must have at least one word (got {class_name!r})")
    head = "".join(re.escape(w) + _SEPARATOR for w in words[:-1])
    last = "|".join(re.escape(f) for f in sorted(plural_forms(words[-1]), key=lambda f: (-len(f), f)))
    return re.compile(rf"(?<!\w)(?P<noun>{head}(?:{last})){_POSSESSIVE}(?!\w)", re.IGNORECASE)


def mention_spans(prompt: str, class_name: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of every mention of ``class_name`` in ``prompt``."""
    return [m.span() for m in mention_pattern(class_name).finditer(prompt)]


def mentions(prompt: str, class_name: str) -> bool:
    """Whether ``prompt`` names ``class_name`` (a vocabulary line or bare name), by the rules above.

    >>> mentions("Two black cats on a sofa", "cat"), mentions("a category", "cat")
    (True, False)
    """
    return mention_pattern(class_name).search(prompt) is not None



def as_class_list(classes: Sequence[str] | str) -> list[str]:
    """``classes`` as a list; a single string counts as one class."""
    if isinstance(classes, str):
        return [classes]
    return list(classes)


class Mention(NamedTuple):
    """One mention of a class in a text: characters ``[start, end)``, possessive ending included."""

    start: int
    end: int
    #: Whether the mention ends in a possessive (``'s`` or ``'``).
    possessive: bool


def find_mentions(prompt: str, classes: Iterable[str]) -> list[Mention]:
    """Non-overlapping mentions of all ``classes`` in ``prompt``, in text order.

    Where mentions of two classes overlap (``"hot dog"`` and ``"dog"``), the longer one wins.
    """
    found = [
        Mention(m.start(), m.end(), m.group("poss") is not None)
        for name in classes
        for m in mention_pattern(name).finditer(prompt)
    ]
    found.sort(key=lambda s: (-(s.end - s.start), s.start))
    chosen: list[Mention] = []
    for span in found:
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen)


# --------------------------------------------------------------------------------------------
# a / an
# --------------------------------------------------------------------------------------------

#: Words that start with a vowel letter but a consonant sound, or the other way round.
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")
_A_BEFORE = ("uni", "use", "usu", "eu", "one", "once", "ukulele", "utensil")


def indefinite_article(word: str) -> str:
    """``"a"`` or ``"an"`` for ``word`` (lowercase; the caller restores a capital).

    >>> indefinite_article("apple"), indefinite_article("hourglass"), indefinite_article("unicorn")
    ('an', 'an', 'a')
    """
    w = word.lower()
    if w.startswith(_AN_BEFORE):
        return "an"
    if w.startswith(_A_BEFORE):
        return "a"
    return "an" if w[:1] in _VOWELS else "a"
