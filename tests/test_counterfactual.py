"""Class-name matching (magicseg_hf.generation.names) and counterfactual prompts
(magicseg_hf.generation.counterfactual)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magicseg_hf.errors import InputError
from magicseg_hf.generation.counterfactual import counterfactual_prompt, replace_mentions
from magicseg_hf.generation.names import (
    Mention,
    bare_name,
    find_mentions,
    indefinite_article,
    mention_spans,
    mentions,
    plural_forms,
)

PROPERTY = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# ---- bare names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("bow (weapon)", "bow"),
        ("flip-flop (sandal)", "flip-flop"),
        ("traffic_light", "traffic light"),
        ("  Dixie cup ", "Dixie cup"),
        ("cat", "cat"),
        ("(weapon)", "weapon"),
        ("potted  plant", "potted plant"),
    ],
)
def test_bare_name(line: str, expected: str) -> None:
    assert bare_name(line) == expected


def test_empty_class_name_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"class name must have at least one word \(got '   '\)"):
        mentions("a cat", "   ")


# ---- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt, name",
    [
        ("A Cat on a mat", "cat"),
        ("two CATS", "cat"),
        ("the cat's tail", "cat"),
        ("the cats' tails", "cat"),
        ("the cat’s tail", "cat"),
        ("three mice", "mouse"),
        ("two oxen pulling a cart", "ox"),
        ("a flock of geese", "goose"),
        ("people on a street", "person"),
        ("a person", "person"),
        ("children playing", "child"),
        ("kitchen knives", "knife"),
        ("autumn leaves", "leaf"),
        ("a pack of wolves", "wolf"),
        ("bare feet", "foot"),
        ("white teeth", "tooth"),
        ("two men", "man"),
        ("women walking", "woman"),
        ("firemen", "fireman"),
        ("red buses", "bus"),
        ("cardboard boxes", "box"),
        ("ripe cherries", "cherry"),
        ("tomatoes", "tomato"),
        ("a school of fish", "fish"),
        ("sheep grazing", "sheep"),
        ("deer in a forest", "deer"),
        ("a pair of dice", "die"),
        ("traffic lights at night", "traffic light"),
        ("a Traffic-light", "traffic light"),
        ("a traffic_light", "traffic light"),
        ("a trafficlight", "traffic light"),
        ("a bow on a table", "bow (weapon)"),
        ("wooden shelves", "shelves"),
        ("a wooden shelf", "shelves"),
        ("a t-shirt", "T-shirt"),
        ("a T shirt", "t-shirt"),
        ("a cat-shaped pillow", "cat"),
        ("cacti in a desert", "cactus"),
    ],
)
def test_mentions_positive(prompt: str, name: str) -> None:
    assert mentions(prompt, name)


@pytest.mark.parametrize(
    "prompt, name",
    [
        ("a category of concatenated bobcats", "cat"),
        ("a catalog", "cat"),
        ("scattered leaves", "cat"),
        ("a hatbox", "hat"),
        ("that is it", "hat"),
        ("chatting", "hat"),
        ("a busy street", "bus"),
        ("an ambush", "bus"),
        ("a dogma", "dog"),
        ("a mousetrap", "mouse"),
        ("the carpet", "car"),
        ("an oxygen tank", "ox"),
        ("a boxer", "ox"),
        ("a traffic jam and a light", "traffic light"),
        ("a rainbow", "bow (weapon)"),
        ("elbows", "bow"),
        ("cat_5 cable", "cat"),
    ],
)
def test_mentions_negative(prompt: str, name: str) -> None:
    assert not mentions(prompt, name)


def test_plural_forms_cover_irregulars() -> None:
    assert {"mice", "mouse"} <= plural_forms("mouse")
    assert "oxen" in plural_forms("ox")
    assert "people" in plural_forms("person")
    assert "knives" in plural_forms("knife")
    assert "wolves" in plural_forms("wolf")
    assert {"buses", "busses"} <= plural_forms("bus")
    assert "cherries" in plural_forms("cherry")
    assert "boxen" not in plural_forms("box")


def test_mention_spans_are_whole_words() -> None:
    text = "a cat, a category and two cats"
    assert [text[s:e] for s, e in mention_spans(text, "cat")] == ["cat", "cats"]


def test_find_mentions_prefers_the_longer_name_and_marks_possessives() -> None:
    text = "a hot dog beside the dog's bowl"
    found = find_mentions(text, ["dog", "hot dog"])
    assert [text[m.start:m.end] for m in found] == ["hot dog", "dog's"]
    assert found == [Mention(2, 9, False), Mention(21, 26, True)]


@pytest.mark.parametrize(
    "word, article",
    [
        ("apple", "an"), ("Owl", "an"), ("cat", "a"), ("hourglass", "an"), ("honest", "an"),
        ("honorable", "an"), ("heirloom", "an"), ("unicorn", "a"), ("useful", "a"), ("usual", "a"),
        ("euro", "a"), ("one-eyed", "a"), ("once-famous", "a"), ("ukulele", "a"), ("utensil", "a"),
        ("umbrella", "an"), ("horse", "a"), ("", "a"),
    ],
)
def test_indefinite_article(word: str, article: str) -> None:
    assert indefinite_article(word) == article


def test_counterfactual_fixes_the_article_with_the_shared_rule() -> None:
    # the same a/an rule as the template prompts ("an hourglass"), applied after a removal
    assert counterfactual_prompt("a cat-shaped hourglass on a shelf", ["cat"]) == "an hourglass on a shelf"
    assert counterfactual_prompt("an apple-shaped unicorn toy", ["apple"]) == "a unicorn toy"


def test_replace_mentions_paper_style() -> None:
    assert replace_mentions("a cat and a dog's bowl", ["cat", "dog"], "nothing") == "a nothing and a nothing's bowl"
    assert replace_mentions("a category", ["cat"], "nothing") == "a category"


# ---- counterfactual prompts: documented policy ---------------------------------------------


@pytest.mark.parametrize(
    "prompt, classes, expected",
    [
        # post-nominal adjectives and adverbs before a participle go with the removed noun
        ("A close-up photo of a striking dog clearly visible in a rainy alley.", ["dog"],
         "A close-up photo in a rainy alley."),
        ("a photo of a cat quietly sleeping on a sofa", ["cat"], "a photo of a sofa"),
        # determiners, numerals and adjectives of the removed noun go with it
        ("two black cats", ["cat"], ""),
        ("a photo of a cat", ["cat"], "a photo"),
        ("a photo of a tabby cat sleeping next to a dog on a sunlit porch, 35mm photo", ["cat"],
         "a photo of a dog on a sunlit porch, 35mm photo"),
        ("a photo of a tabby cat sleeping next to a dog on a sunlit porch, 35mm photo", ["dog"],
         "a photo of a tabby cat sleeping on a sunlit porch, 35mm photo"),
        ("a photo of a tabby cat sleeping next to a dog on a sunlit porch, 35mm photo", ["cat", "dog"],
         "a photo on a sunlit porch, 35mm photo"),
        # coordinated mentions collapse; a clause-initial locative goes; capitals carry over
        ("a cat and a dog on a sofa", ["cat", "dog"], "a sofa"),
        ("A cat and a dog on a sofa.", ["cat", "dog"], "A sofa."),
        ("a photo of a cat and a dog", ["cat"], "a photo of a dog"),
        ("a red apple and an orange", ["apple"], "an orange"),
        ("a cat, a dog, and a bird", ["bird"], "a cat, a dog"),
        ("a cat, a dog, and a bird", ["cat"], "a dog, and a bird"),
        # prepositions without an object
        ("a dog playing with a cat on the grass", ["cat"], "a dog playing on the grass"),
        ("an elephant next to a cat", ["cat"], "an elephant"),
        ("a dog chasing big cats", ["cat"], "a dog"),
        # participle whose subject was removed
        ("a cat wearing a hat", ["cat"], "a hat"),
        ("a herd of sheep grazing on a hill", ["sheep"], "a hill"),
        ("A fluffy orange cat curled up on a windowsill, watching the snow fall.", ["cat"],
         "A windowsill, watching the snow fall."),
        ("A red bus parked beside a traffic light on a rainy street", ["bus"], "A traffic light on a rainy street"),
        ("a bowl of cherries on a table", ["bowl"], "cherries on a table"),
        ("a bowl of cherries on a table", ["cherry"], "a bowl on a table"),
        # a passive participle that lost its object goes with it
        ("A dog on a sunlit patio, surrounded by potted plants.", ["potted plant"], "A dog on a sunlit patio."),
        ("a table covered with plates", ["plate"], "a table"),
        # possessives become "the"
        ("A dog's bowl on the floor", ["dog"], "The bowl on the floor"),
        ("the dogs' bowls", ["dog"], "the bowls"),
        ("a photo of my dog’s bowl", ["dog"], "a photo of the bowl"),
        # hyphenated compounds: a modifier compound goes alone, with a/an fixed
        ("a cat-shaped pillow on an ox-drawn cart", ["cat", "ox"], "a pillow on a cart"),
        # one anchored noun modifier
        ("a police dog sniffing a bag", ["dog"], "a bag"),
        # multi-word names in any spelling, irregular plurals
        ("three mice and two oxen near a barn", ["mouse", "ox"], "a barn"),
        ("Traffic-lights over a quiet street", ["traffic light"], "A quiet street"),
        ("a man holding kitchen knives", ["knife"], "a man"),
        ("kitchen knives on a table", ["knife"], "a table"),
        # other words are never touched
        ("sunset over the sea, no cats", ["cat"], "sunset over the sea"),
        ("a hatbox beside a hat", ["hat"], "a hatbox"),
        ("a busy street with two buses", ["bus"], "a busy street"),
        ("a bobcat next to a cat in a category", ["cat"], "a bobcat in a category"),
        # sentence structure
        ("A man with a dog. A cat sleeps.", ["cat"], "A man with a dog. Sleeps."),
        # LVIS qualifier and underscores
        ("a bow and arrows on a table", ["bow (weapon)"], "arrows on a table"),
        ("a traffic light at a crossing", ["traffic_light"], "a crossing"),
    ],
)
def test_counterfactual_examples(prompt: str, classes: list[str], expected: str) -> None:
    assert counterfactual_prompt(prompt, classes) == expected


def test_prompt_without_mention_is_returned_unchanged() -> None:
    prompt = "A  category of  concatenated things , busy bobcats and a hatbox"
    assert counterfactual_prompt(prompt, ["cat", "bus", "hat"]) is prompt


def test_single_string_counts_as_one_class() -> None:
    assert counterfactual_prompt("a cat and a tree", "cat") == "a tree"


def test_words_joined_by_a_removal_are_removed_too() -> None:
    # removing "cat" brings "hot" and "dog" together: the result must not name "hot dog" either
    result = counterfactual_prompt("a hot cat dog on a plate", ["cat", "hot dog"])
    assert not mentions(result, "hot dog") and not mentions(result, "cat")
    assert "plate" in result


READABILITY_CASES = [
    ("a cat and a dog", ["cat"]),
    ("a cat and a dog", ["dog"]),
    ("a cat, a dog and a bird on a sofa, 35mm photo", ["cat", "dog"]),
    ("a cat, a dog, and a bird", ["dog"]),
    ("cats, dogs, and birds", ["cat", "dog", "bird"]),
    ("a dog with a cat, in a park, with trees", ["cat"]),
    ("(a cat) on a mat", ["cat"]),
    ("A cat. A dog. A bird.", ["dog"]),
    ("a cat and a dog and a mouse", ["cat", "mouse"]),
    ("a kitchen with a cat, a dog and a cup", ["cat", "dog", "cup"]),
    ("a cat  and   a dog", ["cat"]),
    ("a photo of a cat with a dog", ["cat", "dog"]),
]


@pytest.mark.parametrize("prompt, classes", READABILITY_CASES)
def test_result_is_tidy(prompt: str, classes: list[str]) -> None:
    result = counterfactual_prompt(prompt, classes)
    for name in classes:
        assert not mentions(result, name)
    assert "  " not in result
    assert result == result.strip()
    assert not re.search(r",\s*(and|or)?\s*,", result), result
    assert not re.search(r"^\s*(and|or|with|,)\b", result, flags=re.IGNORECASE), result
    assert not re.search(r"\b(and|or|with|of),?\s*$", result), result
    assert not re.search(r"\s[,.;:]", result), result
    assert "()" not in result


# ---- properties -----------------------------------------------------------------------------

CLASSES = ["cat", "dog", "mouse", "bus", "hat", "traffic light", "person", "knife", "sheep", "ox"]
# Mentions as an LLM might write them (case, plurals, possessives, spellings).
MENTION_FORMS = {
    "cat": ["cat", "Cat", "cats", "CATS", "cat's", "cats'"],
    "dog": ["dog", "Dogs", "dog's"],
    "mouse": ["mouse", "mice", "Mice"],
    "bus": ["bus", "buses", "Bus"],
    "hat": ["hat", "hats", "HAT"],
    "traffic light": ["traffic light", "traffic lights", "Traffic-light", "traffic_lights"],
    "person": ["person", "people", "persons"],
    "knife": ["knife", "knives"],
    "sheep": ["sheep", "Sheep"],
    "ox": ["ox", "oxen"],
}
# Words that contain a class name but are other words.
LOOKALIKES = ["category", "concatenate", "bobcat", "hatbox", "that", "busy", "dogma", "oxygen", "boxer",
              "mousetrap", "personal", "knifepoint", "sheepdog", "lights", "traffic"]
CONSONANT_WORD = st.from_regex(r"[bcdfghjklmnpqrstvwxz]{2,7}", fullmatch=True)
ENGLISH = ["a", "the", "on", "in", "with", "and", "of", "next", "to", "black", "two", "sofa", "table",
           "sleeping", "photo", "garden", "near", "red", "big", "under", "sunny", ",", ".", "light"]


@st.composite
def prompts_with_mentions(draw: st.DrawFn) -> tuple[str, list[str]]:
    classes = draw(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=3, unique=True))
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(ENGLISH + LOOKALIKES),
                CONSONANT_WORD,
                st.sampled_from(classes).flatmap(lambda c: st.sampled_from(MENTION_FORMS[c])),
            ),
            min_size=1,
            max_size=14,
        )
    )
    separators = draw(st.lists(st.sampled_from([" ", "  ", ", ", " - ", "; "]), min_size=len(pieces), max_size=len(pieces)))
    text = "".join(p + s for p, s in zip(pieces, separators)).strip()
    return text, classes


@PROPERTY
@given(prompts_with_mentions())
def test_property_no_mention_survives(case: tuple[str, list[str]]) -> None:
    prompt, classes = case
    result = counterfactual_prompt(prompt, classes)
    for name in classes:
        assert not mentions(result, name), (prompt, result)
    if result != prompt:
        assert "  " not in result and result == result.strip()


def _words(text: str) -> list[str]:
    return re.findall(r"\w+(?:[-'’]\w+)*", text.lower())


@PROPERTY
@given(prompts_with_mentions())
def test_property_remaining_words_keep_their_order(case: tuple[str, list[str]]) -> None:
    prompt, classes = case
    result = counterfactual_prompt(prompt, classes)
    source = iter(w if w not in ("a", "an") else "a" for w in _words(prompt))
    for word in _words(result):
        word = "a" if word in ("a", "an") else word
        if word == "the":  # a possessive mention becomes "the"
            continue
        assert any(word == w for w in source), (prompt, result, word)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.lists(CONSONANT_WORD, min_size=1, max_size=3), st.sampled_from(["", "cat", "cats", "Dog", "mice"])),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.sampled_from(LOOKALIKES), max_size=4),
)
def test_property_unrelated_words_are_untouched(groups: list[tuple[list[str], str]], lookalikes: list[str]) -> None:
    """Words that are neither the class nor grammar attached to it come out exactly, in order.

    The one documented exception: a lone word at the very start directly before a mention is
    taken for the mention's noun modifier ("kitchen knives on a table") and goes with it.
    """
    filler: list[str] = list(lookalikes)
    pieces: list[str] = list(lookalikes)
    for g, (words, mention) in enumerate(groups):
        starts_text = g == 0 and not lookalikes and len(words) == 1 and mention
        filler.extend([] if starts_text else words)
        pieces.extend(words)
        if mention:
            pieces.append(mention)
    result = counterfactual_prompt(" ".join(pieces), ["cat", "dog", "mouse"])
    assert result == " ".join(filler)


@PROPERTY
@given(st.text(alphabet=st.sampled_from(list("abcdeghiorstuy ,.'-ACT")), max_size=40))
def test_property_text_without_mentions_is_identity(text: str) -> None:
    classes = ["cat", "hat", "bus"]
    if not any(mentions(text, c) for c in classes):
        assert counterfactual_prompt(text, classes) == text
    else:
        assert not any(mentions(counterfactual_prompt(text, classes), c) for c in classes)
