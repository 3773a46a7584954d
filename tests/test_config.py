"""Run settings: defaults, the TOML file, flag overrides, base URL rules and the token."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from batcher.config import (
    DEFAULT_BASE_URL,
    Settings,
    check_base_url,
    load_settings,
    parse_duration,
    read_token,
)
from batcher.errors import UsageError

SECRET = "sk-live-7f3c2b9e-do-not-print"  # noqa: S105 - a fake token the tests look for
#: A custom token variable name (a name, not a token).
TOKEN_ENV = "MY_TOKEN"  # noqa: S105 - the name of a variable, not a token


def toml(tmp_path: Path, text: str) -> Path:
    """Write a config file and return its path."""
    path = tmp_path / "batcher.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    """With no file and no flags, the documented defaults apply."""
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.base_url == DEFAULT_BASE_URL == "https://api.aelyst.ai/v1"
    assert settings.token_env == "AELYST_API_TOKEN"  # noqa: S105 - a variable name
    assert settings.token_file == ""
    assert settings.concurrency == 8
    assert settings.rate == 0.0
    assert settings.start_rate == 5.0
    assert settings.max_attempts == 5
    assert settings.allowed_categories == ()
    assert settings.encoding == "utf-8"
    assert settings.delimiter == ""


def test_file_values_are_used(tmp_path: Path) -> None:
    """Values in the TOML file replace the defaults, ints for floats and lists as tuples."""
    path = toml(
        tmp_path,
        'rate = 20\nconcurrency = 4\nallowed_categories = ["Spam", "Resolved"]\n'
        'base_url = "http://127.0.0.1:8080/v1"\nprogress = false\ndelimiter = ";"\n',
    )
    settings = load_settings(path, {})
    assert settings.rate == 20.0
    assert isinstance(settings.rate, float)
    assert settings.concurrency == 4
    assert settings.allowed_categories == ("Spam", "Resolved")
    assert settings.base_url == "http://127.0.0.1:8080/v1"
    assert settings.progress is False
    assert settings.delimiter == ";"
    assert settings.max_attempts == 5  # untouched keys keep their default


def test_flags_override_file(tmp_path: Path) -> None:
    """A flag beats the file; a flag left as None does not erase the file's value."""
    path = toml(tmp_path, "rate = 20\nconcurrency = 4\n")
    settings = load_settings(path, {"rate": 30.0, "concurrency": None, "max_attempts": 2})
    assert settings.rate == 30.0
    assert settings.concurrency == 4
    assert settings.max_attempts == 2


def test_unknown_key_lists_the_known_keys(tmp_path: Path) -> None:
    """An unknown key is a UsageError naming it and listing every known key."""
    path = toml(tmp_path, "rate = 5\nconcurency = 4\n")
    with pytest.raises(UsageError) as caught:
        load_settings(path, {})
    message = str(caught.value)
    assert "'concurency'" in message
    for field in fields(Settings):
        assert field.name in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param('concurrency = "8"', "concurrency must be a whole number", id="str-for-int"),
        pytest.param("concurrency = 2.5", "concurrency must be a whole number", id="float-for-int"),
        pytest.param("concurrency = true", "concurrency must be a whole number", id="bool-for-int"),
        pytest.param('rate = "fast"', "rate must be a number", id="str-for-float"),
        pytest.param("rate = true", "rate must be a number", id="bool-for-float"),
        pytest.param("progress = 1", "progress must be", id="int-for-bool"),
        pytest.param("base_url = 5", "base_url must be a string", id="int-for-str"),
        pytest.param('allowed_categories = "Spam"', "list of strings", id="str-for-list"),
        pytest.param("allowed_categories = [1, 2]", "list of strings", id="ints-for-list"),
        pytest.param("[rate]\nvalue = 5", "rate must be a number", id="table-for-float"),
    ],
)
def test_wrong_type_in_file_is_a_usage_error(tmp_path: Path, text: str, words: str) -> None:
    """A value of the wrong type in the file is a UsageError naming the key and the type wanted."""
    with pytest.raises(UsageError, match=words):
        load_settings(toml(tmp_path, text + "\n"), {})


def test_invalid_toml_is_a_usage_error(tmp_path: Path) -> None:
    """A file that is not TOML is a UsageError saying so."""
    with pytest.raises(UsageError, match="not valid TOML"):
        load_settings(toml(tmp_path, "rate = = 5\n"), {})


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    """A config file that does not exist is a UsageError naming it."""
    with pytest.raises(UsageError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml", {})


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"concurrency": "8"}, id="str-for-int"),
        pytest.param({"bogus": 1}, id="unknown"),
    ],
)
def test_bad_override_is_a_usage_error(overrides: dict[str, Any]) -> None:
    """A bad override from the caller is a UsageError, not a TypeError."""
    with pytest.raises(UsageError, match="bad setting"):
        load_settings(None, overrides)


def test_rate_zero_means_no_ceiling(tmp_path: Path) -> None:
    """rate = 0 is accepted and kept as 0 (no ceiling); a negative rate is refused."""
    assert load_settings(toml(tmp_path, "rate = 0\n"), {}).rate == 0.0
    with pytest.raises(UsageError, match="rate must be 0"):
        Settings(rate=-1.0)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://api.aelyst.ai/v1", id="https"),
        pytest.param("https://example.com:8443/v1", id="https-port"),
        pytest.param("http://127.0.0.1:8080/v1", id="ipv4-loopback"),
        pytest.param("http://127.5.5.5/v1", id="ipv4-loopback-range"),
        pytest.param("http://[::1]:8080/v1", id="ipv6-loopback"),
        pytest.param("http://localhost:8080/v1", id="localhost"),
        pytest.param("http://LOCALHOST/v1", id="localhost-upper"),
    ],
)
def test_base_url_accepted(url: str) -> None:
    """https anywhere, plain http only for a loopback host, are accepted."""
    check_base_url(url)
    assert Settings(base_url=url).base_url == url


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://example.com/v1", id="http-remote"),
        pytest.param("http://10.0.0.1/v1", id="http-private"),
        pytest.param("http://0.0.0.0/v1", id="http-any"),
        pytest.param("http://localhost.evil.test/v1", id="http-localhost-prefix"),
        pytest.param("http://127.0.0.1.nip.io/v1", id="http-loopback-lookalike"),
        pytest.param("ftp://127.0.0.1/v1", id="ftp"),
        pytest.param("https://", id="https-no-host"),
        pytest.param("api.aelyst.ai/v1", id="no-scheme"),
        pytest.param("", id="empty"),
    ],
)
def test_base_url_refused(url: str) -> None:
    """Plain http to a non-loopback host, other schemes and host-less URLs are UsageErrors."""
    with pytest.raises(UsageError, match="must be https://"):
        check_base_url(url)
    with pytest.raises(UsageError):
        Settings(base_url=url)


def test_token_from_the_environment() -> None:
    """The token comes from AELYST_API_TOKEN by default, surrounding spaces trimmed."""
    assert read_token(Settings(), {"AELYST_API_TOKEN": f"  {SECRET}\n"}).reveal() == SECRET


def test_token_from_a_custom_variable() -> None:
    """token_env names the variable the token is read from."""
    environ = {TOKEN_ENV: SECRET, "AELYST_API_TOKEN": "other"}
    assert read_token(Settings(token_env=TOKEN_ENV), environ).reveal() == SECRET


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="unset"),
        pytest.param({"MY_TOKEN": "   "}, id="blank"),
        pytest.param({"AELYST_API_TOKEN": SECRET, "OTHER": SECRET}, id="set-elsewhere"),
    ],
)
def test_missing_token_names_the_variable_not_any_token(environ: dict[str, str]) -> None:
    """No token is a UsageError naming the variable, and never showing a token value."""
    with pytest.raises(UsageError) as caught:
        read_token(Settings(token_env=TOKEN_ENV), environ)
    message = str(caught.value)
    assert TOKEN_ENV in message
    assert SECRET not in message
    assert "sk-" not in message


def test_token_file_private_is_read(tmp_path: Path) -> None:
    """A token file with mode 0o600 is read, surrounding whitespace trimmed; it beats the env."""
    path = tmp_path / "token"
    path.write_text(f"{SECRET}\n", encoding="utf-8")
    path.chmod(0o600)
    settings = Settings(token_file=str(path))
    assert read_token(settings, {"AELYST_API_TOKEN": "from-env"}).reveal() == SECRET


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A token file group or world can read is a UsageError that never shows the token."""
    path = tmp_path / "token"
    path.write_text(SECRET, encoding="utf-8")
    path.chmod(mode)
    assert os.stat(path).st_mode & 0o777 == mode
    with pytest.raises(UsageError, match="chmod 600") as caught:
        read_token(Settings(token_file=str(path)), {})
    assert SECRET not in str(caught.value)


def test_token_file_missing_or_empty_is_refused(tmp_path: Path) -> None:
    """A missing or empty token file is a UsageError naming the file."""
    with pytest.raises(UsageError, match="cannot read token file"):
        read_token(Settings(token_file=str(tmp_path / "absent")), {})
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    empty.chmod(0o600)
    with pytest.raises(UsageError, match="is empty"):
        read_token(Settings(token_file=str(empty)), {})


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        pytest.param({"concurrency": 0}, "concurrency must be from 1 to 256", id="concurrency-0"),
        pytest.param(
            {"concurrency": 257}, "concurrency must be from 1 to 256", id="concurrency-257"
        ),
        pytest.param({"start_rate": 0.0}, "start_rate must be more than 0", id="start-rate-0"),
        pytest.param({"window": -1.0}, "window must be more than 0", id="window-negative"),
        pytest.param({"timeout": 0.0}, "timeout must be more than 0", id="timeout-0"),
        pytest.param({"rate": float("nan")}, "rate must be 0", id="rate-nan"),
        pytest.param({"max_attempts": 0}, "max_attempts must be at least 1", id="attempts-0"),
        pytest.param({"max_requeues": -1}, "max_requeues", id="requeues-negative"),
        pytest.param({"delimiter": ":"}, "delimiter must be one of", id="delimiter"),
        pytest.param({"token_env": ""}, "token_env", id="token-env-empty"),
        pytest.param({"outage_wait": -1.0}, "outage_wait must be 0", id="outage-wait-negative"),
        pytest.param({"max_same_errors": -1}, "max_same_errors", id="same-errors-negative"),
        pytest.param({"max_errors": "lots"}, "max_errors must be a count", id="max-errors-word"),
        pytest.param({"max_errors": "0"}, "max_errors must be a count", id="max-errors-0"),
        pytest.param({"max_errors": "150%"}, "max_errors must be a count", id="max-errors-150"),
        pytest.param(
            {"skip_done_within": 3600.0}, "needs a state_file", id="skip-done-without-state"
        ),
        pytest.param(
            {"skip_done_within": -1.0, "state_file": "s.db"},
            "skip_done_within must be 0",
            id="skip-done-negative",
        ),
        pytest.param(
            {"notify_url": "http://hooks.example.com/T0/B0/secret-path"},
            "notify URL must be https://",
            id="notify-plain-http-remote",
        ),
        pytest.param({"notify_url": "hooks.example.com"}, "notify URL", id="notify-no-scheme"),
    ],
)
def test_settings_validation(changes: dict[str, Any], words: str) -> None:
    """Out-of-range settings are UsageErrors, whether built directly or loaded."""
    with pytest.raises(UsageError, match=words):
        Settings(**changes)
    with pytest.raises(UsageError, match=words):
        load_settings(None, changes)


def test_settings_validation_applies_to_file_values(tmp_path: Path) -> None:
    """A file value out of range (concurrency = 0) is a UsageError too."""
    with pytest.raises(UsageError, match="concurrency must be from 1 to 256, not 0"):
        load_settings(toml(tmp_path, "concurrency = 0\n"), {})


def test_the_example_config_lists_every_key_with_its_default() -> None:
    """config.example.toml names every setting, and loading it gives exactly the defaults."""
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    text = example.read_text(encoding="utf-8")
    keys = {line.split("=")[0].strip() for line in text.splitlines() if "=" in line[:30]}
    keys = {key for key in keys if key and not key.startswith("#")}
    assert keys == {field.name for field in fields(Settings)}
    assert load_settings(example, {}) == Settings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('outage_wait = "10m"\nmax_duration = "1h30m"', (600.0, 5400.0), id="words"),
        pytest.param("outage_wait = 0\nmax_duration = 90", (0.0, 90.0), id="seconds"),
    ],
)
def test_durations_in_the_config_file(
    tmp_path: Path, text: str, expected: tuple[float, float]
) -> None:
    """Durations in a config file may be written as in flags ("10m") or as seconds."""
    settings = load_settings(toml(tmp_path, text + "\n"), {})
    assert (settings.outage_wait, settings.max_duration) == expected


@pytest.mark.parametrize(
    ("text", "limit"),
    [("", (None, None)), ("100", (100, None)), ("5%", (None, 0.05)), (" 100% ", (None, 1.0))],
)
def test_max_errors_is_a_count_or_a_share(text: str, limit: tuple[object, object]) -> None:
    """--max-errors reads "100" as a count and "5%" as a share of the rows answered."""
    assert Settings(max_errors=text).error_limit == limit


def test_skip_done_within_in_days_from_the_config_file(tmp_path: Path) -> None:
    """A config file may give skip_done_within as "7d"; it is held in seconds."""
    settings = load_settings(toml(tmp_path, 'state_file = "s.db"\nskip_done_within = "7d"\n'), {})
    assert settings.skip_done_within == 7 * 86400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604800.0), ("1d12h", 129600.0), ("2d30m", 174600.0), ("0.5d", 43200.0)],
)
def test_durations_take_days(text: str, seconds: float) -> None:
    """parse_duration reads days (d) before hours, minutes and seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["d", "1d12", "7days", "1h2d"])
def test_durations_in_days_refuse_slips(text: str) -> None:
    """A unit alone, a bare tail after a unit or units out of order is refused, not guessed."""
    with pytest.raises(UsageError, match="is not like"):
        parse_duration(text)


def test_notify_url_refusal_does_not_echo_the_url() -> None:
    """A webhook URL's path is its secret: the refusal names the rule, not the URL."""
    with pytest.raises(UsageError) as refused:
        Settings(notify_url="http://hooks.example.com/services/T0/B0/XyZsecret")
    assert "XyZsecret" not in str(refused.value)
    Settings(notify_url="http://127.0.0.1:9/hook")  # loopback may be plain http
