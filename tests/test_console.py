"""What a ``magicseg`` command writes to the terminal (issue 18): no credential in any of it —
log lines, warnings, ``print`` calls of other libraries, progress bars, a bug's traceback — and bad
input prints exactly one line, without what was written before the input was refused."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest

from magicseg_hf import cli, console
from magicseg_hf.errors import InputError
from magicseg_hf.hub_access import register_secret

TOKEN = "hf_consoleSecretToken1234"
ENDPOINT = "https://alice:s3cretpass@hub.example.org"


class _Noisy:
    """A verb that writes the secrets every way a library might, then succeeds or fails."""

    DESCRIPTION = "test verb"

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--fail", action="store_true")
        parser.add_argument("--after-checks", action="store_true")

    @staticmethod
    def run(args):
        register_secret(TOKEN)
        if args.after_checks:
            console.checks_passed()
        logging.getLogger("httpx").warning("HTTP Request: GET %s/api?token=%s", ENDPOINT, TOKEN)
        warnings.warn(f"retrying {ENDPOINT} with {TOKEN}", UserWarning, stacklevel=1)
        print(f"connected to {ENDPOINT}")
        sys.stderr.write(f"\rdownloading {ENDPOINT}/file: 50%")
        if args.fail:
            raise InputError(f"--repo refused by {ENDPOINT}")
        return 0


@pytest.fixture
def noisy_verb(monkeypatch):
    monkeypatch.setattr(cli, "VERBS", (*cli.VERBS, cli.Verb("noisy", "a test verb", _Noisy)))
    monkeypatch.setenv("HF_ENDPOINT", ENDPOINT)


@pytest.fixture(autouse=True)
def plain_warnings(monkeypatch):
    """Warnings printed as Python prints them (to sys.stderr at the time), not recorded by pytest."""

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "showwarning", show)
        yield


def _secrets_in(text: str) -> list[str]:
    return [secret for secret in (TOKEN, "s3cretpass", "alice:") if secret in text]


def test_no_credential_reaches_stdout_or_stderr(noisy_verb, capsys):
    assert cli.main(["noisy"]) == 0
    out, err = capsys.readouterr()
    assert "connected to https://***@hub.example.org" in out  # printed, with its credentials redacted
    assert "downloading https://***@hub.example.org/file" in err  # held back, then shown at the end
    assert "retrying https://***@hub.example.org with ***" in err
    assert _secrets_in(out + err) == []


def test_bad_input_drops_what_came_before_it(noisy_verb, capsys):
    assert cli.main(["noisy", "--fail"]) == 2
    out, err = capsys.readouterr()
    assert err == "magicseg noisy: error: --repo refused by https://***@hub.example.org\n"
    assert _secrets_in(out) == []


def test_after_the_checks_pass_the_terminal_shows_everything(noisy_verb, capsys):
    assert cli.main(["noisy", "--fail", "--after-checks"]) == 2
    err = capsys.readouterr().err
    # a failure in the middle of the work keeps what led to it
    assert "downloading" in err and err.endswith("magicseg noisy: error: --repo refused by https://***@hub.example.org\n")
    assert _secrets_in(err) == []


def test_a_bugs_traceback_is_redacted(capfd):
    register_secret(TOKEN)
    try:
        raise RuntimeError(f"request to {ENDPOINT} with {TOKEN} failed")
    except RuntimeError as error:
        console.redacting_excepthook(type(error), error, error.__traceback__)
    err = capfd.readouterr().err
    assert "RuntimeError: request to https://***@hub.example.org with *** failed" in err
    assert _secrets_in(err) == []


def test_the_streams_are_given_back(noisy_verb, capsys):
    before = sys.stdout, sys.stderr
    cli.main(["noisy", "--fail"])
    assert (sys.stdout, sys.stderr) == before


class _Counting:
    """A verb whose library code names the parameter it was given, between backticks."""

    DESCRIPTION = "test verb"

    @staticmethod
    def add_arguments(parser):
        parser.add_argument("--num-pairs", dest="num_pairs", type=int)

    @staticmethod
    def run(args):
        raise InputError(f"`num_pairs` must be positive (got {args.num_pairs}); `seed` is fine")


def test_the_command_line_names_the_flag_where_the_library_names_the_parameter(monkeypatch, capsys):
    from magicseg_hf.errors import as_flags

    monkeypatch.setattr(cli, "VERBS", (*cli.VERBS, cli.Verb("counting", "a test verb", _Counting)))
    assert cli.main(["counting", "--num-pairs", "0"]) == 2
    # the flag the user typed; a parameter the verb has no flag for keeps its bare name
    assert capsys.readouterr().err == "magicseg counting: error: --num-pairs must be positive (got 0); seed is fine\n"
    assert as_flags("`a_b` and `c`", {"a_b": "--a-b"}.get) == "--a-b and c"
