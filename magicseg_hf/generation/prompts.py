"""Scene prompts: which classes a prompt shows, and the backends that write it.

* :func:`sample_class_sets` draws 1..``max_classes`` distinct vocabulary lines per prompt.
* A :class:`PromptBackend` turns each class set into one scene description that names every
  class by its bare name (checked with :func:`~magicseg_hf.generation.names.mentions`, the same
  matcher the counterfactual prompt uses). A description that omits a class is re-drawn with a
  derived seed (:func:`redraw_seed`), at most ``max_attempts`` times, then
  :class:`~magicseg_hf.errors.InputError`.

Backends:

* :class:`TemplatePromptBackend` (``"template"``): offline, seeded, a few dozen scenes,
  attributes, placements, lighting and photographic styles.
* :class:`TransformersPromptBackend` (``"transformers"``): a local instruct causal LM asked, as in
  the paper, for ten diverse, detailed scene descriptions containing the classes.
* :class:`OpenAIPromptBackend` (``"openai"``): the same request to any OpenAI-compatible
  ``/chat/completions`` endpoint, over plain ``urllib``; the key is read from the environment only.

Every backend is deterministic per item: the prompt of a class set depends on that class set and
its seed only, never on how the items were batched. Caching LLM answers is the pipeline's job,
and building a backend from the settings is the assembler's
(:func:`magicseg_hf.generation.components.build_prompt_backend`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from magicseg_hf.errors import InputError, first_line
from magicseg_hf.generation.names import bare_name, indefinite_article, mentions
from magicseg_hf.hub_access import redact, register_secret
from magicseg_hf.seeding import GENERATION_NAMESPACE, derive_seed, seeded_random

logger = logging.getLogger(__name__)

#: Seconds the OpenAI-compatible backend waits for a TCP connection when checking its endpoint.
CONNECT_TIMEOUT = 3.0

__all__ = [
    "OpenAIPromptBackend",
    "PromptBackend",
    "TemplatePromptBackend",
    "TransformersPromptBackend",
    "build_instruction",
    "parse_descriptions",
    "redraw_seed",
    "sample_class_sets",
]

# --------------------------------------------------------------------------------------------
# Class sets
# --------------------------------------------------------------------------------------------


def _clashes(a: str, b: str) -> bool:
    """Whether two classes cannot share a prompt: the same bare name, or one naming the other
    ("dog" inside "hot dog"), which would make the mention check and the counterfactual ambiguous."""
    na, nb = bare_name(a), bare_name(b)
    return na.lower() == nb.lower() or mentions(na, nb) or mentions(nb, na)


def sample_class_sets(
    vocabulary: Sequence[str], count: int, rng: random.Random, max_classes: int = 2
) -> list[list[str]]:
    """Draw ``count`` class sets, each of 1..``max_classes`` distinct vocabulary lines.

    The number of classes is uniform in ``1..min(max_classes, len(vocabulary))``; the lines are
    drawn uniformly without replacement. Two lines whose bare names coincide or contain each
    other (``"bow (weapon)"``/``"bow (decorative ribbons)"``, ``"dog"``/``"hot dog"``) are never put
    in the same set (a set is shrunk rather than loop forever). Lines are returned exactly as in
    the vocabulary (LVIS qualifiers kept).

    Raises:
        InputError: empty vocabulary, negative ``count`` or ``max_classes`` < 1.
    """
    lines = list(dict.fromkeys(line for line in vocabulary if line.strip()))
    if not lines:
        raise InputError(f"vocabulary must list at least one class name (got {list(vocabulary)!r})")
    if count < 0:
        raise InputError(f"count must be >= 0 (got {count})")
    if max_classes < 1:
        raise InputError(f"max_classes must be >= 1 (got {max_classes})")
    sets: list[list[str]] = []
    for _ in range(count):
        k = rng.randint(1, min(max_classes, len(lines)))
        chosen: list[str] = []
        for _ in range(8):
            chosen = rng.sample(lines, k)
            if not any(_clashes(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1 :]):
                break
        else:  # only clashing lines left to pair: keep the compatible prefix
            kept: list[str] = []
            for line in chosen:
                if not any(_clashes(line, other) for other in kept):
                    kept.append(line)
            chosen = kept
        sets.append(chosen)
    return sets


def attempt_classes(vocabulary: Sequence[str], seed: int, index: int, max_classes: int) -> list[str]:
    """The class set of attempt ``index`` of a generation run with ``seed`` (every source draws it so)."""
    rng = random.Random(derive_seed(GENERATION_NAMESPACE, seed, index, "classes"))
    return sample_class_sets(list(vocabulary), 1, rng, max_classes=max_classes)[0]


def redraw_seed(seed: int, attempt: int) -> int:
    """The seed of re-draw ``attempt`` of an item seeded ``seed``, a non-negative 63-bit int.

    Attempt 0 keeps ``seed`` itself; later attempts derive theirs from ``(seed, attempt)``.
    """
    if attempt == 0:
        return int(seed) % (2**63)
    return derive_seed("magicseg-prompt", int(seed), attempt)


# --------------------------------------------------------------------------------------------
# The backend interface
# --------------------------------------------------------------------------------------------


class PromptBackend(ABC):
    """Writes one scene prompt per class set.

    Subclasses implement :meth:`candidates`: descriptions for the bare names ``names`` under
    ``seed``. :meth:`write` keeps the first candidate that names every class, re-drawing with a
    derived seed up to ``max_attempts`` times.
    """

    #: Short name used in messages.
    name: str = "prompt"
    #: Requests per class set before giving up.
    max_attempts: int = 5

    @abstractmethod
    def candidates(self, names: list[str], seed: int) -> list[str]:
        """Candidate descriptions for the bare class names ``names``, deterministic in ``seed``."""

    def check(self) -> None:
        """Raise :class:`InputError` when the backend cannot work at all (run before anything is
        written); local backends always can."""
        return None

    def write(self, class_sets: list[list[str]], seeds: list[int]) -> list[str]:
        """One prompt per class set, each naming all its classes by their bare names.

        Args:
            class_sets: vocabulary lines per prompt (qualifiers are stripped for the text).
            seeds: one seed per class set; the same (class set, seed) always gives the same prompt.

        Raises:
            InputError: mismatched lengths, an empty class set, or a backend that keeps omitting a
                class after ``max_attempts`` tries.
        """
        if len(class_sets) != len(seeds):
            raise InputError(
                f"write() needs one seed per class set (got {len(class_sets)} class sets and {len(seeds)} seeds)"
            )
        return [self._write_one(list(classes), int(seed)) for classes, seed in zip(class_sets, seeds)]

    def _write_one(self, classes: list[str], seed: int) -> str:
        names = [bare_name(c) for c in classes]
        if not names or not all(names):
            raise InputError(f"every prompt needs at least one non-empty class name (got {classes!r})")
        misses: dict[str, int] = dict.fromkeys(names, 0)
        for attempt in range(self.max_attempts):
            for text in self.candidates(names, redraw_seed(seed, attempt)):
                missing = [n for n in names if not mentions(text, n)]
                if not missing:
                    return text
                for n in missing:
                    misses[n] += 1
            logger.debug("%s backend: no description names all of %s (attempt %d)", self.name, names, attempt + 1)
        worst = max(misses, key=lambda n: misses[n])
        raise InputError(
            f"the {self.name} prompt backend kept omitting {worst!r} from its scene descriptions "
            f"({self.max_attempts} attempts for classes {names}); try another model or class name"
        )


# --------------------------------------------------------------------------------------------
# Template backend
# --------------------------------------------------------------------------------------------

_OPENINGS = (
    "a photo of", "a close-up photo of", "a wide shot of", "a candid snapshot of",
    "an award-winning photograph of", "a high-resolution photo of", "a DSLR photo of",
    "a documentary photograph of", "a realistic photo of", "an everyday photo of",
    "a professional photograph of", "a color photo of", "a travel photo of",
    "an amateur photo of", "a detailed photograph of", "a magazine photo of",
    "a sharp photo of", "a cinematic still of", "a smartphone photo of", "a film photograph of",
    "a natural-light photo of", "a street photo of", "a wide-angle photo of", "a telephoto shot of",
    "a stock photo of", "a press photo of", "an editorial photo of", "a vivid photo of",
    "a crisp photo of", "a snapshot of",
)
_ATTRIBUTES = (
    "", "", "", "small", "large", "old", "new", "colorful", "vintage", "clean", "weathered",
    "bright", "dark", "single", "striking", "detailed", "classic", "modern", "worn", "shiny",
    "dusty", "red", "white", "black", "brown", "blue", "green", "gray", "yellow", "tiny",
    "big", "well-kept", "everyday",
)
# Placements and relations are prepositional, so a counterfactual that drops the class reads well.
_PLACEMENTS = (
    "", "", "", " in the foreground", " in the center of the frame", " in the shade", " in sharp focus",
    " up close", " at the edge of the frame", " in full view", " in the middle distance", " at eye level",
    " in the morning sun", " on display", " in a natural pose", " from a low angle", " from above",
    " from the side", " against a plain backdrop", " beside a doorway", " under a tree", " by a window",
    " near a wall", " on the ground", " in the spotlight", " under a streetlight", " in a patch of sunlight",
    " near the camera", " behind a fence", " in soft shadow", " on a table",
)
_RELATIONS = (
    "next to", "beside", "near", "in front of", "behind", "and", "together with", "alongside",
    "close to", "with", "by",
)
_SCENES = (
    " on a sunlit porch", " in a cozy living room", " on a busy city street", " in a quiet park",
    " on a sandy beach", " in a snowy forest", " in a modern kitchen", " on a farm",
    " in a cluttered garage", " in a bright classroom", " at a train station", " in a flower garden",
    " on a wooden deck", " by a mountain lake", " in a rainy alley", " in a desert",
    " at a market stall", " in a library", " on a rooftop terrace", " in a backyard",
    " in a green meadow", " in an open-plan office", " on a country road", " at a harbor",
    " in a museum hall", " in a greenhouse", " on a balcony", " in an old barn",
    " near a river", " in a hotel lobby", " in a small cafe", " on a hiking trail",
    " in a suburban driveway", " at a playground", " in a workshop", " on a snowy street",
    " in an autumn forest", " in a tidy bedroom", " at a campsite", " in a parking lot",
    " in a shopping mall", " on a stone bridge", " in a busy restaurant",
)
_LIGHTING = (
    "golden hour light", "soft morning light", "overcast daylight", "harsh midday sun",
    "warm evening light", "dramatic side lighting", "neon lights at night", "soft window light",
    "blue hour", "foggy morning", "bright studio lighting", "dappled sunlight", "candlelight",
    "late afternoon sun", "cool fluorescent light", "light rain", "clear daylight",
    "backlit by the setting sun", "diffuse cloudy light", "warm indoor lighting",
    "streetlights at dusk", "crisp winter light", "hazy summer light", "moonlight",
)
_STYLES = (
    "35mm photo", "DSLR, sharp focus", "high detail", "8k photograph", "film grain",
    "bokeh background", "shallow depth of field", "wide-angle lens", "telephoto lens",
    "Kodak Portra 400", "natural colors", "award-winning photography", "photorealistic",
    "professional photography", "f/1.8", "documentary style", "muted tones", "vivid colors",
    "high dynamic range", "candid shot", "sharp details", "soft focus background",
    "50mm lens", "realistic textures",
)
# Bare names that read better with "the"/"some" than with "a"/"an".
_MASS_NOUNS = frozenset(
    """grass water sky snow sand ground floor wall ceiling road sidewalk food wood rock ice mud
    dirt fog smoke sea earth bread rice pasta milk coffee tea soup meat cheese butter salad
    fruit hay gravel concrete cloth paper furniture luggage lettuce broccoli spinach""".split()
)


def _noun_phrase(rng: random.Random, name: str) -> str:
    """``name`` with a determiner and maybe an attribute: "a shiny teapot", "the sky", "some jeans"."""
    low = name.lower()
    last = low.split()[-1] if low.split() else low
    if last in _MASS_NOUNS:
        return f"{rng.choice(('the', 'some'))} {name}"
    attribute = rng.choice(_ATTRIBUTES)
    words = f"{attribute} {name}" if attribute else name
    if last.endswith("s") and not last.endswith(("ss", "us", "is")):
        return f"{rng.choice(('some', 'a pair of', 'the'))} {words}"
    return f"{indefinite_article(words)} {words}"


class TemplatePromptBackend(PromptBackend):
    """Offline scene prompts from templates, seeded per item.

    ``"a photo of a tabby cat in the foreground next to a dog on a sunlit porch, golden hour
    light, 35mm photo"``: an opening, one noun phrase per class (with an attribute and, for a
    single class, a placement; two classes are joined by a spatial relation), a scene, a lighting
    and a style, each drawn from a few dozen pieces. The random stream is seeded from the seed
    and the class names, so the same class set and seed give the same prompt in any batch.
    """

    name = "template"

    def candidates(self, names: list[str], seed: int) -> list[str]:
        rng = seeded_random("magicseg-template", seed, "|".join(names))
        phrases = [_noun_phrase(rng, n) for n in names]
        if len(phrases) == 1:
            subject = phrases[0] + rng.choice(_PLACEMENTS)
        else:
            subject = phrases[0]
            for phrase in phrases[1:]:
                subject += f" {rng.choice(_RELATIONS)} {phrase}"
        prompt = f"{rng.choice(_OPENINGS)} {subject}{rng.choice(_SCENES)}, {rng.choice(_LIGHTING)}, {rng.choice(_STYLES)}"
        return [prompt]


# --------------------------------------------------------------------------------------------
# LLM instruction and answer parsing (shared by the transformers and openai backends)
# --------------------------------------------------------------------------------------------


def _join_names(names: Sequence[str]) -> str:
    quoted = [f'"{n}"' for n in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + f" and {quoted[-1]}"


def build_instruction(names: Sequence[str], count: int = 10) -> str:
    """The request sent to an LLM: ``count`` varied, detailed scene descriptions showing ``names``.

    Paraphrases the paper's instruction (ten diverse, detailed descriptions of scenes containing
    the classes) and asks for a plain numbered list, which :func:`parse_descriptions` reads.
    """
    together = "together in the same scene" if len(names) > 1 else "as a clearly visible subject"
    return (
        f"Write {count} different, detailed descriptions of photographs that show {_join_names(names)} "
        f"{together}. Each description must name {_join_names(names)} literally, using exactly "
        f"{'these words' if len(names) > 1 else 'this word'}. Make the descriptions diverse: vary the "
        "place, the surroundings, the viewpoint, the lighting, the time of day and what is happening. "
        "Each description is a single sentence of at most 40 words that can be used as a prompt for "
        "an image generator. Answer with a numbered list (1. to "
        f"{count}.) and nothing else."
    )


_MARKER = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.):\]]|[-*•·–]|#{1,6})\s+")
_INLINE_NUMBER = re.compile(r"(?:^|\s)\(?\d{1,3}[.)]\s+")
_BOLD_TITLE = re.compile(r"^\*\*[^*]{1,80}\*\*\s*[:\-–]?\s*")
_LABEL = re.compile(r"^(?:scene|description|prompt|caption|image|photo)\s*#?\d*\s*[:.\-–]\s+", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|absolutely|okay|ok|here (?:are|is)|below (?:are|is)|great)\b", re.IGNORECASE
)
_CLOSING = re.compile(
    r"^(?:i hope|hope|let me know|feel free|these (?:descriptions|prompts|scenes)|enjoy|note:)", re.IGNORECASE
)
_QUOTES = "\"'“”‘’`"


def _clean_item(text: str) -> str:
    s = " ".join(text.split())
    s = _BOLD_TITLE.sub("", s)
    s = _LABEL.sub("", s)
    s = s.replace("**", "").replace("__", "")
    s = s.strip().strip(_QUOTES).strip()
    return s


def parse_descriptions(text: str) -> list[str]:
    """Scene descriptions from an LLM answer, in order, without duplicates.

    Reads numbered (``1.``, ``1)``, ``(1)``) and bulleted (``-``, ``*``, ``•``) lists, including a
    list written inline on one line; items continued on the next line are joined. When the answer
    has list items, unmarked lines (``"Sure! Here are ten descriptions:"``, closing remarks) are
    ignored; otherwise each non-empty line that is not such a preamble is one description.
    Quotes, ``**bold**`` titles and labels like ``"Scene 3:"`` are stripped.
    """
    lines = text.replace("\r", "").split("\n")
    if sum(bool(_MARKER.match(line)) for line in lines) <= 1:
        pieces = _INLINE_NUMBER.split(text.replace("\r", ""))
        if len(pieces) > 2:
            lines = [f"- {p}" for p in pieces[1:]]
    items: list[str] = []  # list items, continuation lines joined
    loose: list[str] = []  # lines outside any list item
    in_item = False
    for line in lines:
        if _MARKER.match(line):
            items.append(_MARKER.sub("", line, count=1))
            in_item = True
        elif not line.strip():
            in_item = False
        elif in_item and not _CLOSING.match(line.strip()):
            items[-1] += " " + line.strip()
        else:
            loose.append(line)
    chosen = items if items else loose
    out: list[str] = []
    for raw in chosen:
        s = _clean_item(raw)
        if not s or (not items and (_PREAMBLE.match(s) or s.endswith(":"))):
            continue
        if s.endswith(":") and len(s.split()) <= 6:  # a heading inside the list
            continue
        if s not in out:
            out.append(s)
    return out


# --------------------------------------------------------------------------------------------
# transformers backend
# --------------------------------------------------------------------------------------------


class TransformersPromptBackend(PromptBackend):
    """Scene descriptions from a local instruct causal LM (transformers).

    One request per class set (and per re-draw): the instruction of :func:`build_instruction`,
    wrapped in the tokenizer's chat template when it has one, sampled with the torch RNG seeded
    from the item's seed (the global RNG state is restored afterwards), so a class set and seed
    always give the same answer. The first parsed description that names every class is kept.

    Args:
        model: a causal LM (``AutoModelForCausalLM``), already on its device.
        tokenizer: its tokenizer.
        prompts_per_request: descriptions asked for per request (paper: 10).
        max_new_tokens: generation budget per request.
        temperature, top_p: sampling parameters.
    """

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        prompts_per_request: int = 10,
        max_new_tokens: int = 768,
        temperature: float = 0.9,
        top_p: float = 0.95,
    ) -> None:
        if prompts_per_request < 1:
            raise InputError(f"prompts_per_request must be >= 1 (got {prompts_per_request})")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
        self.model = model
        self.tokenizer = tokenizer
        self.prompts_per_request = prompts_per_request
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p

    def _encode(self, instruction: str) -> dict[str, Any]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            encoded = tok.apply_chat_template(
                [{"role": "user", "content": instruction}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
                return_tensors="pt",
            )
        else:
            encoded = tok(instruction + "\n\n1.", return_tensors="pt")
        return {k: v for k, v in dict(encoded).items() if k in ("input_ids", "attention_mask")}

    def generate_text(self, names: list[str], seed: int) -> str:
        """The raw answer of the model to the instruction for ``names``, sampled under ``seed``."""
        import torch

        inputs = self._encode(build_instruction(names, self.prompts_per_request))
        device = getattr(self.model, "device", torch.device("cpu"))
        inputs = {k: v.to(device) for k, v in inputs.items()}
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        cuda_devices = [device] if getattr(device, "type", "cpu") == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices), torch.inference_mode():
            torch.manual_seed(seed)
            output = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def candidates(self, names: list[str], seed: int) -> list[str]:
        text = self.generate_text(names, seed)
        if getattr(self.tokenizer, "chat_template", None) is None:
            text = "1. " + text  # the prompt ended with "1."
        return parse_descriptions(text)


# --------------------------------------------------------------------------------------------
# OpenAI-compatible backend
# --------------------------------------------------------------------------------------------


class OpenAIPromptBackend(PromptBackend):
    """Scene descriptions from any OpenAI-compatible ``/chat/completions`` endpoint.

    The request carries the instruction of :func:`build_instruction`, ``temperature`` and the
    item's ``seed`` (honoured by servers that support it). The API key is read from the
    environment variable ``api_key_env`` at each request and sent only in the ``Authorization``
    header: it is never logged, stored or put in an error message (server answers quoted in
    errors are redacted). Failures (no connection, timeout, HTTP error, malformed JSON) raise
    :class:`InputError` at once with one line; there are no retries beyond the re-draws for
    descriptions that omit a class.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        prompts_per_request: int = 10,
        timeout: float = 30.0,
        temperature: float = 1.0,
        max_tokens: int = 1500,
    ) -> None:
        if not base_url:
            raise InputError(f"the openai prompt backend needs a base URL such as http://localhost:8000/v1 (got {base_url!r})")
        if not model:
            raise InputError(f"the openai prompt backend needs a model name, `prompt_model` (got {model!r})")
        if prompts_per_request < 1:
            raise InputError(f"prompts_per_request must be >= 1 (got {prompts_per_request})")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.prompts_per_request = prompts_per_request
        self.timeout = timeout
        self.temperature = temperature
        self.max_tokens = max_tokens

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        if key:
            text = text.replace(key, "***")
        return redact(re.sub(r"(?i)(bearer\s+|sk-)[\w\-.]+", r"\1***", text))

    def check(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Raise :class:`InputError` unless a TCP connection to the endpoint opens within
        ``timeout`` seconds (an unreachable server is named before anything is written)."""
        parsed = urllib.parse.urlparse(self.url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
                pass
        except OSError as error:
            raise self._fail(f"cannot connect within {timeout:g} s ({first_line(error)})") from None

    def _fail(self, what: str) -> InputError:
        return InputError(self._redact(f"OpenAI-compatible endpoint {self.url}: {what}"))

    def request(self, names: list[str], seed: int) -> str:
        """The content of the endpoint's first choice for the instruction for ``names``."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": build_instruction(names, self.prompts_per_request)}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": seed,
            "n": 1,
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            register_secret(key)  # redacted in every message and log line
            headers["Authorization"] = f"Bearer {key}"
        else:
            logger.debug("%s is not set: calling %s without an API key", self.api_key_env, self.url)
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        logger.debug("POST %s (model %s, seed %d)", self.url, self.model, seed)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = ""
            try:
                detail = " ".join(err.read(300).decode("utf-8", "replace").split())
            except Exception:  # noqa: BLE001 - the body is only decoration for the message
                detail = ""
            raise self._fail(f"HTTP {err.code} {err.reason}" + (f": {detail}" if detail else "")) from None
        except TimeoutError:  # socket.timeout is TimeoutError
            raise self._fail(f"no answer within {self.timeout:g} s") from None
        except urllib.error.URLError as err:
            raise self._fail(f"cannot connect ({err.reason})") from None
        except OSError as err:
            raise self._fail(f"connection failed ({err})") from None
        try:
            payload = json.loads(raw)
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            snippet = " ".join(raw[:200].decode("utf-8", "replace").split())
            raise self._fail(f"unexpected response (expected chat-completions JSON): {snippet!r}") from None
        if not isinstance(content, str):
            raise self._fail("unexpected response: the message content is not text")
        return content

    def candidates(self, names: list[str], seed: int) -> list[str]:
        return parse_descriptions(self.request(names, seed))
