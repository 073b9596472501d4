"""Prompt backends and class-set sampling (magicseg_hf.generation.prompts)."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from magicseg_hf.errors import InputError, ModelLoadError
from magicseg_hf.generation import components
from magicseg_hf.generation.config import GenerationConfig
from magicseg_hf.generation.counterfactual import counterfactual_prompt
from magicseg_hf.generation.names import mentions
from magicseg_hf.generation.prompts import (
    OpenAIPromptBackend,
    PromptBackend,
    TemplatePromptBackend,
    TransformersPromptBackend,
    build_instruction,
    parse_descriptions,
    redraw_seed,
    sample_class_sets,
)

VOCAB_DIR = Path(__file__).resolve().parents[1] / "magicseg_hf" / "vocabularies"


def lvis() -> list[str]:
    return [line for line in (VOCAB_DIR / "lvis.txt").read_text().splitlines() if line.strip()]


# ---- class sets -------------------------------------------------------------------------------


def test_sample_class_sets_sizes_and_distinctness() -> None:
    vocabulary = ["cat", "dog", "bus", "sofa", "tree"]
    sets = sample_class_sets(vocabulary, 300, random.Random(0))
    assert len(sets) == 300
    assert {len(s) for s in sets} == {1, 2}  # both sizes occur
    for s in sets:
        assert len(set(s)) == len(s)
        assert all(c in vocabulary for c in s)
    assert len({tuple(s) for s in sets}) > 15


def test_sample_class_sets_is_seeded() -> None:
    vocabulary = lvis()
    assert sample_class_sets(vocabulary, 20, random.Random(7)) == sample_class_sets(vocabulary, 20, random.Random(7))
    assert sample_class_sets(vocabulary, 20, random.Random(7)) != sample_class_sets(vocabulary, 20, random.Random(8))


def test_sample_class_sets_single_class_and_max_classes() -> None:
    assert sample_class_sets(["cat"], 10, random.Random(0), max_classes=2) == [["cat"]] * 10
    sets = sample_class_sets(["a1", "b2", "c3", "d4"], 200, random.Random(0), max_classes=3)
    assert {len(s) for s in sets} == {1, 2, 3}
    assert all(len(s) == 1 for s in sample_class_sets(["a1", "b2"], 50, random.Random(0), max_classes=1))


def test_sample_class_sets_keeps_vocabulary_lines_and_avoids_clashes() -> None:
    vocabulary = ["bow (weapon)", "bow (decorative ribbons)", "dog", "hot dog"]
    sets = sample_class_sets(vocabulary, 300, random.Random(0))
    flat = {c for s in sets for c in s}
    assert "bow (weapon)" in flat  # the exact line, qualifier kept
    for s in sets:
        assert not ({"bow (weapon)", "bow (decorative ribbons)"} <= set(s))
        assert not ({"dog", "hot dog"} <= set(s))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocabulary": []}, "vocabulary must list at least one class name (got [])"),
        ({"vocabulary": ["  "]}, "vocabulary must list at least one class name (got ['  '])"),
        ({"count": -1}, "count must be >= 0 (got -1)"),
        ({"max_classes": 0}, "max_classes must be >= 1 (got 0)"),
    ],
)
def test_sample_class_sets_bad_input(kwargs: dict[str, Any], message: str) -> None:
    args = {"vocabulary": ["cat"], "count": 1, "rng": random.Random(0), "max_classes": 2, **kwargs}
    with pytest.raises(InputError) as info:
        sample_class_sets(**args)
    assert str(info.value) == message


# ---- template backend -------------------------------------------------------------------------


def test_template_is_deterministic_and_independent_of_batching() -> None:
    backend = TemplatePromptBackend()
    sets = [["cat"], ["dog", "sofa"], ["traffic light"]]
    together = backend.write(sets, [1, 2, 3])
    alone = [backend.write([s], [seed])[0] for s, seed in zip(sets, [1, 2, 3])]
    assert together == alone == TemplatePromptBackend().write(sets, [1, 2, 3])
    reordered = backend.write(sets[::-1], [3, 2, 1])
    assert reordered == together[::-1]
    assert backend.write([["cat"]], [1]) != backend.write([["cat"]], [2])


def test_template_prompts_are_the_same_as_ever() -> None:
    # Rows are keyed by these strings: the template stream is seeded from (seed, class names) only.
    assert TemplatePromptBackend().write([["cat"], ["dog", "traffic light"], ["hourglass"]], [0, 7, 3]) == [
        "a DSLR photo of a red cat in a natural pose in a rainy alley, overcast daylight, photorealistic",
        "a crisp photo of a worn dog and a green traffic light in a quiet park, soft window light, "
        "professional photography",
        "a street photo of a single hourglass in the shade in a parking lot, hazy summer light, natural colors",
    ]


def test_template_articles_follow_the_sound() -> None:
    prompts = TemplatePromptBackend().write([["owl"], ["hourglass"], ["unicorn"]] * 40, list(range(120)))
    for prompt in prompts:
        article, first_word = prompt.split(" of ", 1)[1].split()[:2]  # "an old hourglass", "a unicorn"
        vowel_sound = first_word == "hourglass" or (first_word[0] in "aeiou" and first_word != "unicorn")
        assert article == ("an" if vowel_sound else "a"), prompt


def test_template_is_diverse() -> None:
    backend = TemplatePromptBackend()
    prompts = backend.write([["cat"]] * 200, list(range(200)))
    assert len(set(prompts)) >= 195
    openings = {p.split(" cat")[0].rsplit(" a", 1)[0] for p in prompts}
    scenes = {p.split(", ")[0].split(" cat")[-1] for p in prompts}
    lighting = {p.split(", ")[-2] for p in prompts}
    styles = {p.split(", ")[-1] for p in prompts}
    assert len(openings) >= 20 and len(scenes) >= 30 and len(lighting) >= 15 and len(styles) >= 15


def test_template_prompts_name_their_classes_across_lvis() -> None:
    vocabulary = lvis()
    sets = sample_class_sets(vocabulary, 400, random.Random(3))
    prompts = TemplatePromptBackend().write(sets, list(range(400)))
    for classes, prompt in zip(sets, prompts):
        for c in classes:
            assert mentions(prompt, c), (c, prompt)
            assert "(" not in prompt  # the bare name is used, never the qualifier
        counterfactual = counterfactual_prompt(prompt, classes)
        assert counterfactual and not any(mentions(counterfactual, c) for c in classes), (prompt, counterfactual)


def test_template_prompt_reads_like_a_prompt() -> None:
    prompt = TemplatePromptBackend().write([["cat", "dog"]], [0])[0]
    assert prompt.startswith(("a ", "an "))
    assert prompt.count(", ") >= 2 and "  " not in prompt
    assert mentions(prompt, "cat") and mentions(prompt, "dog")


def test_write_checks_lengths_and_empty_sets() -> None:
    backend = TemplatePromptBackend()
    with pytest.raises(InputError):
        backend.write([["cat"]], [1, 2])
    with pytest.raises(InputError):
        backend.write([[]], [1])


# ---- re-draw and bounded attempts (a backend with canned answers) --------------------------------


class CannedBackend(PromptBackend):
    name = "canned"

    def __init__(self, answers: list[list[str]]) -> None:
        self.answers = answers
        self.seeds: list[int] = []

    def candidates(self, names: list[str], seed: int) -> list[str]:
        self.seeds.append(seed)
        return self.answers[min(len(self.seeds) - 1, len(self.answers) - 1)]


def test_redraw_until_a_candidate_names_every_class() -> None:
    backend = CannedBackend([["a dog on a sofa"], ["a cat alone", "a cat and a dog in a park", "later"]])
    assert backend.write([["cat", "dog"]], [42]) == ["a cat and a dog in a park"]
    assert backend.seeds == [42, redraw_seed(42, 1)]


def test_redraw_seed_keeps_attempt_zero_and_is_fixed() -> None:
    assert redraw_seed(42, 0) == 42 and redraw_seed(2**63 + 5, 0) == 5
    assert [redraw_seed(42, 1), redraw_seed(42, 2)] == [8851018770857819415, 706654839328554600]


def test_error_after_bounded_attempts_names_the_missing_class() -> None:
    backend = CannedBackend([["a dog on a sofa", "two dogs"]])
    with pytest.raises(InputError) as info:
        backend.write([["cat", "dog"]], [0])
    assert len(backend.seeds) == backend.max_attempts == 5
    message = str(info.value)
    assert message.startswith("the canned prompt backend kept omitting 'cat'") and "\n" not in message


# ---- answer parsing ---------------------------------------------------------------------------

CANNED_ANSWERS = [
    (
        "Sure! Here are ten detailed descriptions:\n\n1. A cat sleeping on a sofa.\n2. A cat in the rain.\n\n"
        "3. A cat on a roof at dusk.\n\nI hope these help!",
        ["A cat sleeping on a sofa.", "A cat in the rain.", "A cat on a roof at dusk."],
    ),
    ("1) a cat\n2) a dog\n(3) a bird", ["a cat", "a dog", "a bird"]),
    ("- a cat on a mat\n* a dog in a park\n• a bird on a wire", ["a cat on a mat", "a dog in a park", "a bird on a wire"]),
    ('1. "A tabby cat by a window."\n2. “A dog on a beach.”', ["A tabby cat by a window.", "A dog on a beach."]),
    ("1. **Beach:** a cat on the sand\n2. **Kitchen** - a cat near a stove", ["a cat on the sand", "a cat near a stove"]),
    ("1. Scene 1: a cat on a bench\n2. Description: a cat in snow", ["a cat on a bench", "a cat in snow"]),
    ("1. a cat sitting on a\n   wooden fence at sunset\n2. a cat indoors", ["a cat sitting on a wooden fence at sunset", "a cat indoors"]),
    ("1. a cat 2. a dog 3. a bird", ["a cat", "a dog", "a bird"]),
    ("A cat on a mat.\n\nA dog in a park.", ["A cat on a mat.", "A dog in a park."]),
    ("Here are the scenes:\nA cat on a mat.\nA cat on a mat.", ["A cat on a mat."]),
    ("", []),
    ("10. a cat\n11. a dog", ["a cat", "a dog"]),
]


@pytest.mark.parametrize("text, expected", CANNED_ANSWERS)
def test_parse_descriptions(text: str, expected: list[str]) -> None:
    assert parse_descriptions(text) == expected


def test_instruction_asks_for_the_classes() -> None:
    text = build_instruction(["cat", "traffic light"], 10)
    assert "10" in text and '"cat"' in text and '"traffic light"' in text and "numbered" in text


# ---- transformers backend: a tiny random causal LM built offline -----------------------------

WORDS = ["a", "the", "on", "in", "of", "with", "and", "photo", "cat", "dog", "sofa", "park", "sunny", "night",
         "red", "blue", "big", "small", "tree", "street", "window", "light", "1.", "2.", "3.", "."]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_tokenizer(chat: bool) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<unk>", "<eos>", "<|user|>", "<|assistant|>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
        additional_special_tokens=["<|user|>", "<|assistant|>"],
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def tiny_lm() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny_tokenizer(chat=False)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=512, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def test_transformers_backend_sampling_is_seeded(tiny_lm: Any) -> None:
    backend = TransformersPromptBackend(tiny_lm, tiny_tokenizer(chat=False), max_new_tokens=24)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = backend.generate_text(["cat"], seed=5)
    assert torch.equal(torch.rand(3), expected_next)  # the global RNG is left as it was
    assert backend.generate_text(["cat"], seed=5) == first
    assert backend.generate_text(["cat"], seed=6) != first
    assert len(first.split()) > 5


def test_transformers_backend_uses_the_chat_template(tiny_lm: Any) -> None:
    backend = TransformersPromptBackend(tiny_lm, tiny_tokenizer(chat=True), max_new_tokens=8)
    encoded = backend._encode(build_instruction(["cat"]))
    text = backend.tokenizer.decode(encoded["input_ids"][0])
    assert text.startswith("<|user|>") and text.rstrip().endswith("<|assistant|>")
    plain = TransformersPromptBackend(tiny_lm, tiny_tokenizer(chat=False))._encode("a cat")
    assert "<|assistant|>" not in backend.tokenizer.decode(plain["input_ids"][0])
    assert len(backend.generate_text(["cat"], seed=0).split()) > 0


def test_transformers_backend_gives_up_with_a_clear_error(tiny_lm: Any) -> None:
    calls = []
    original = tiny_lm.generate

    def counting_generate(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["max_new_tokens"])
        return original(*args, **kwargs)

    tiny_lm.generate = counting_generate
    try:
        backend = TransformersPromptBackend(tiny_lm, tiny_tokenizer(chat=True), max_new_tokens=6)
        with pytest.raises(InputError, match="zebra"):  # not in the tiny vocabulary: never generated
            backend.write([["zebra"]], [0])
    finally:
        del tiny_lm.generate
    assert len(calls) == 5


class FakeTokenizer:
    """A tokenizer whose 'tokens' index a list of canned answers; no chat template."""

    chat_template = None
    pad_token_id = None
    eos_token_id = 0

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    def __call__(self, text: str, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        return {"input_ids": torch.zeros(1, 4, dtype=torch.long), "attention_mask": torch.ones(1, 4, dtype=torch.long)}

    def decode(self, ids: torch.Tensor, skip_special_tokens: bool = True) -> str:
        return self.answers[int(ids[0])]


class FakeLM:
    """'Samples' one canned answer with the torch RNG, so the seed decides the answer."""

    device = torch.device("cpu")

    def __init__(self, n_answers: int) -> None:
        self.n_answers = n_answers
        self.seeds: list[int] = []

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        assert kwargs["do_sample"] is True and kwargs["pad_token_id"] == 0
        self.seeds.append(torch.initial_seed())
        choice = torch.randint(self.n_answers, (1, 1))
        return torch.cat([input_ids, choice], dim=1)


def test_transformers_backend_keeps_the_first_description_naming_the_classes() -> None:
    # The prompt ends with "1." when there is no chat template, so answers start after it.
    answers = [" a dog in a park\n2. a cat and a dog on a sofa\n3. a cat with a dog"] * 3
    lm = FakeLM(len(answers))
    backend = TransformersPromptBackend(lm, FakeTokenizer(answers))
    assert backend.write([["cat", "dog"]], [11]) == ["a cat and a dog on a sofa"]
    assert lm.seeds == [11]


def test_transformers_backend_redraws_with_derived_seeds_and_is_batch_independent() -> None:
    answers = ["a dog", "a cat on a roof", "a cat under a car", "a bird", "a cat by a lake", "a dog"]
    backend = TransformersPromptBackend(FakeLM(len(answers)), FakeTokenizer(answers))
    batch = backend.write([["cat"], ["cat"], ["cat"]], [1, 2, 3])
    singles = [TransformersPromptBackend(FakeLM(len(answers)), FakeTokenizer(answers)).write([["cat"]], [s])[0] for s in (1, 2, 3)]
    assert batch == singles
    assert all(mentions(p, "cat") for p in batch)
    lm = FakeLM(len(answers))
    TransformersPromptBackend(lm, FakeTokenizer(answers)).write([["cat"]], [1])
    assert lm.seeds == [redraw_seed(1, a) for a in range(len(lm.seeds))]


# ---- openai backend against a local server ------------------------------------------------------

SECRET = "sk-test-SECRET-0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    mode = "ok"
    requests: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        mode = type(self).mode
        if mode == "slow":
            time.sleep(1.5)
        if mode == "unauthorized":
            payload = json.dumps({"error": {"message": f"Incorrect API key provided: {self.headers['Authorization']}"}})
            self._send(401, payload.encode())
            return
        if mode == "bad-json":
            self._send(200, b"<html>not json</html>")
            return
        content = "Sure, here they are:\n1. a cat on a sofa\n2. a cat in a tree\n3. a dog on a porch"
        self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())

    def _send(self, code: int, payload: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    _Handler.mode = "ok"
    _Handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/"
    httpd.shutdown()
    httpd.server_close()


def test_openai_backend_writes_prompts(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend = OpenAIPromptBackend(server, "tiny-llm", prompts_per_request=3)
    assert backend.write([["dog"], ["cat"]], [7, 8]) == ["a dog on a porch", "a cat on a sofa"]
    first = _Handler.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert first["body"]["model"] == "tiny-llm" and first["body"]["seed"] == 7
    assert '"dog"' in first["body"]["messages"][0]["content"]
    assert SECRET not in caplog.text


@pytest.mark.parametrize("mode, fragment", [("unauthorized", "HTTP 401"), ("bad-json", "unexpected response")])
def test_openai_backend_errors_are_one_line_without_the_key(
    server: str, mode: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _Handler.mode = mode
    backend = OpenAIPromptBackend(server, "tiny-llm")
    with pytest.raises(InputError) as info:
        backend.write([["cat"]], [0])
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert SECRET not in message and SECRET not in caplog.text
    assert SECRET not in repr(info.value.__cause__) and info.value.__suppress_context__
    assert len(_Handler.requests) == 1  # no retries on a failed request


def test_openai_backend_times_out_quickly(server: str) -> None:
    _Handler.mode = "slow"
    backend = OpenAIPromptBackend(server, "tiny-llm", timeout=0.3)
    start = time.monotonic()
    with pytest.raises(InputError, match="no answer within"):
        backend.write([["cat"]], [0])
    assert time.monotonic() - start < 1.4


def test_openai_backend_connection_refused_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(InputError, match="cannot connect") as info:
        OpenAIPromptBackend(f"http://127.0.0.1:{port}/v1", "m").write([["cat"]], [0])
    assert time.monotonic() - start < 5 and SECRET not in str(info.value)


def test_openai_backend_omitting_a_class_is_redrawn_then_fails(server: str) -> None:
    backend = OpenAIPromptBackend(server, "tiny-llm")
    with pytest.raises(InputError, match="'horse'"):
        backend.write([["horse"]], [0])
    assert [r["body"]["seed"] for r in _Handler.requests] == [redraw_seed(0, a) for a in range(5)]


# ---- backends built from the settings (the assembler) ------------------------------------------


def test_assembler_builds_the_configured_backend() -> None:
    def build(**settings: Any) -> PromptBackend:
        config = GenerationConfig(classes=["cat"], preset="tiny", **settings).resolved()
        return components.build_prompt_backend(config, "cpu")

    assert isinstance(build(), TemplatePromptBackend)  # the tiny preset's backend
    llm = build(prompt_backend="transformers", prompts_per_request=4)
    assert isinstance(llm, TransformersPromptBackend) and llm.prompts_per_request == 4
    assert len(llm.generate_text(["cat"], seed=0)) > 0  # the tiny causal LM answers
    remote = build(prompt_backend="openai", openai_base_url="http://127.0.0.1:1/v1/", prompt_model="m")
    assert isinstance(remote, OpenAIPromptBackend) and remote.url == "http://127.0.0.1:1/v1/chat/completions"


def test_assembler_refuses_an_unresolved_config() -> None:
    with pytest.raises(ValueError, match="resolved config"):
        components.build_prompt_backend(GenerationConfig(classes=["cat"], preset="tiny"), "cpu")


def test_openai_backend_without_an_endpoint_is_refused_by_the_settings() -> None:
    with pytest.raises(InputError, match="`prompt_backend` openai needs `openai_base_url`"):
        GenerationConfig(classes=["cat"], preset="tiny", prompt_backend="openai").resolved()
    with pytest.raises(InputError) as info:
        OpenAIPromptBackend("http://127.0.0.1:1/v1", "")
    assert str(info.value) == "the openai prompt backend needs a model name, `prompt_model` (got '')"


def test_missing_prompt_model_folder_is_a_model_load_error(tmp_path: Path) -> None:
    config = GenerationConfig(
        classes=["cat"], preset="tiny", prompt_backend="transformers", prompt_model=str(tmp_path / "missing-model")
    ).resolved()
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="prompt model .*missing-model.*no such folder"):
        components.check_models(config, components.models_record(config))
    with pytest.raises(ModelLoadError, match="missing-model"):
        components.build_prompt_backend(config, "cpu")
    assert time.monotonic() - start < 10
