"""Run settings: defaults, the TOML config file, command-line overrides, the token.

Precedence, lowest first: the defaults below, the config file, the flags.
``config.example.toml`` lists every key; a test keeps it in step with
``Settings``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batcher.errors import UsageError
from batcher.models import Secret

DEFAULT_BASE_URL = "https://api.aelyst.ai/v1"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run is configured by (the input and output paths are given apart).

    Attributes:
        base_url: The API's base URL; https, or http for a loopback host only.
        token_env: The environment variable that holds the API token.
        token_file: A file holding the token instead (must not be readable by others), or "".
        concurrency: Workers, and HTTP connections.
        rate: Requests per second never exceeded; 0 means no ceiling (the pace is learned).
        start_rate: Requests per second before any rate-limit header is seen.
        window: Seconds the X-RateLimit budget is counted over.
        max_attempts: Tries for a row answered 5xx, timing out or losing its connection.
        backoff_base: Seconds of the first retry's backoff ceiling (full jitter, doubling).
        backoff_max: Most seconds one backoff may wait.
        requeue_delay: Seconds a row answered 449 waits before it is sent again.
        max_requeues: 449 answers a row may get before it is ``deferred``.
        timeout: Seconds to wait for a connection or an answer.
        allowed_categories: Categories a close may name; empty allows any.
        encoding: The input file's encoding.
        delimiter: The input's field delimiter; "" sniffs among , ; tab |.
        progress: Show a progress bar (only ever on a terminal).
        max_duration: Seconds after which the run takes no new rows and ends as on
            SIGTERM (resumable); 0 for no deadline.
        outage_wait: Seconds the API may stay unreachable before the run stops as on
            SIGTERM (resumable, exit 3); 0 stops as soon as an outage is seen.
        max_same_errors: Rows in a row, for different contacts, refused with the same
            status and message that stop the run (exit 3); 0: never.
        max_errors: Rows refused or failed that stop the run (exit 3): a count ("100")
            or a share of the rows answered ("5%", judged after 100); "": never.
        max_retry_after: Longest wait a ``Retry-After`` (on a 429 or a 5xx) is obeyed for;
            a longer one stops the run as on SIGTERM (exit 3, resumable).
        state_file: An SQLite file, kept across runs, of the last request that succeeded
            for each identifier (``batcher.state``); "": none.
        skip_done_within: Seconds: a row asking for exactly what last succeeded for its
            contact this recently (by the state file) is skipped as already done; 0: never.
        notify_url: Where the summary JSON is POSTed when the run ends (https, or http
            for a loopback host); "": nowhere.
        metrics_file: Where the run's metrics are written at the end, in the Prometheus
            textfile-collector format; "": nowhere.
    """

    base_url: str = DEFAULT_BASE_URL
    token_env: str = "AELYST_API_TOKEN"  # noqa: S105 - the variable's name, not a token
    token_file: str = ""
    concurrency: int = 8
    rate: float = 0.0
    start_rate: float = 5.0
    window: float = 1.0
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    requeue_delay: float = 180.0
    max_requeues: int = 5
    timeout: float = 30.0
    allowed_categories: tuple[str, ...] = ()
    encoding: str = "utf-8"
    delimiter: str = ""
    progress: bool = True
    max_duration: float = 0.0
    outage_wait: float = 600.0
    max_same_errors: int = 50
    max_errors: str = ""
    max_retry_after: float = 600.0
    state_file: str = ""
    skip_done_within: float = 0.0
    notify_url: str = ""
    metrics_file: str = ""

    def __post_init__(self) -> None:
        _check(self)

    @property
    def error_limit(self) -> tuple[int | None, float | None]:
        """``max_errors`` as (a count, a share from 0 to 1); None where not set."""
        return parse_error_limit(self.max_errors)


def parse_error_limit(text: str) -> tuple[int | None, float | None]:
    """``"100"`` as (100, None), ``"5%"`` as (None, 0.05), ``""`` as (None, None)."""
    text = text.strip()
    if not text:
        return None, None
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            if 0 < share <= 1:
                return None, share
        elif int(text) > 0:
            return int(text), None
    except ValueError:
        pass
    raise UsageError(f"max_errors must be a count like 100 or a share like 5%, not {text!r}")


def load_settings(config_file: Path | None, overrides: Mapping[str, Any]) -> Settings:
    """Defaults, then the config file's keys, then ``overrides`` (None values are ignored)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(config_file))
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return replace(Settings(), **values)
    except TypeError as exc:  # an argument of the wrong type reaching a comparison
        raise UsageError(f"bad setting: {exc}") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise UsageError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    known = {field.name: field for field in fields(Settings)}
    for key, value in data.items():
        if key not in known:
            raise UsageError(
                f"config file {str(path)!r}: unknown key {key!r} "
                f"(known keys: {', '.join(sorted(known))})"
            )
        default = getattr(Settings(), key)
        if key in _DURATIONS and isinstance(value, str):
            data[key] = parse_duration(value)
        elif key == "max_errors" and isinstance(value, int) and not isinstance(value, bool):
            data[key] = str(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"config file {str(path)!r}: {key} must be a list of strings")
            data[key] = tuple(value)
        elif isinstance(default, bool) or isinstance(value, bool):
            if not isinstance(value, bool) or not isinstance(default, bool):
                raise UsageError(f"config file {str(path)!r}: {key} must be a {_kind(default)}")
        elif isinstance(default, float) and isinstance(value, int):
            data[key] = float(value)
        elif not isinstance(value, type(default)):
            raise UsageError(f"config file {str(path)!r}: {key} must be a {_kind(default)}")
    return data


#: Keys a config file may give as a duration ("10m") as well as a number of seconds.
_DURATIONS = frozenset({"max_duration", "outage_wait", "max_retry_after", "skip_done_within"})


def _kind(value: object) -> str:
    return {bool: "true or false", int: "whole number", float: "number", str: "string"}.get(
        type(value), type(value).__name__
    )


def _check(s: Settings) -> None:
    if not 1 <= s.concurrency <= 256:
        raise UsageError(f"concurrency must be from 1 to 256, not {s.concurrency}")
    for name in ("start_rate", "window", "timeout", "backoff_base", "backoff_max"):
        if not getattr(s, name) > 0:
            raise UsageError(f"{name} must be more than 0, not {getattr(s, name)}")
    if not s.max_retry_after > 0:
        raise UsageError(f"max_retry_after must be more than 0, not {s.max_retry_after}")
    if not s.outage_wait >= 0:
        raise UsageError(f"outage_wait must be 0 (stop at once) or more, not {s.outage_wait}")
    if s.max_same_errors < 0:
        raise UsageError(f"max_same_errors must be 0 (off) or more, not {s.max_same_errors}")
    parse_error_limit(s.max_errors)
    if not s.max_duration >= 0:
        raise UsageError(f"max_duration must be 0 (none) or more seconds, not {s.max_duration}")
    if not s.rate >= 0:
        raise UsageError(f"rate must be 0 (no ceiling) or more, not {s.rate}")
    if s.max_attempts < 1:
        raise UsageError(f"max_attempts must be at least 1, not {s.max_attempts}")
    if s.max_requeues < 0 or not s.requeue_delay >= 0:
        raise UsageError("max_requeues and requeue_delay must be 0 or more")
    if s.delimiter not in ("", ",", ";", "\t", "|"):
        raise UsageError(f"delimiter must be one of , ; tab |, not {s.delimiter!r}")
    if not s.token_env:
        raise UsageError("token_env must name an environment variable")
    check_base_url(s.base_url)
    _check_nightly(s)


def _check_nightly(s: Settings) -> None:
    """The state file, the notification and the metrics: checked before anything is sent."""
    if not s.skip_done_within >= 0:
        raise UsageError(f"skip_done_within must be 0 (never) or more, not {s.skip_done_within}")
    if s.skip_done_within and not s.state_file:
        raise UsageError("skip_done_within (--skip-done-within) needs a state_file (--state)")
    if s.notify_url:
        check_url(s.notify_url, "notify URL", show=False)


def check_base_url(url: str) -> None:
    """https, or plain http only for a loopback host, and nothing but scheme, host, port and
    path; raise ``UsageError`` otherwise."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        # User info would send Basic credentials instead of the token (and be echoed in the
        # "to resume" line); a query or fragment would mangle every request's path.
        raise UsageError(
            "the base URL may hold only a scheme, a host, a port and a path (no user:password@, "
            "no ?query, no #fragment)"
        )
    check_url(url, "base URL")


def check_url(url: str, what: str, *, show: bool = True) -> None:
    """https, or plain http only for a loopback host; raise ``UsageError`` naming ``what``.

    ``show=False`` leaves the URL out of the message: a webhook's path is its secret.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and is_loopback(host):
        return
    named = f"{what} {url!r}" if show else what
    raise UsageError(
        f"{named} must be https:// (plain http:// only for 127.0.0.1, ::1 or localhost)"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What an Authorization header can carry: visible ASCII, no spaces (RFC 6750's b64token
# and then some). Anything else would make the HTTP library fail on every request, or
# quote the header (token included) in its error.
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def read_token(settings: Settings, environ: Mapping[str, str] = os.environ) -> Secret:
    """The API token, from the token file or the environment; never echoed anywhere."""
    if settings.token_file:
        path = Path(settings.token_file)
        where = f"token file {str(path)!r}"
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise UsageError(
                    f"{where} can be read by other users; make it private (chmod 600 {str(path)!r})"
                )
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read {where}: {exc.strerror}") from exc
        except UnicodeDecodeError:
            raise UsageError(f"{where} is not UTF-8 text") from None
    else:
        where = f"the environment variable {settings.token_env}"
        text = environ.get(settings.token_env, "").strip()
        if not text:
            raise UsageError(
                f"no API token: set {where} (batcher never takes the token on the command line)"
            )
    return checked_token(text, where)


def checked_token(text: str, where: str = "the token") -> Secret:
    """A token an HTTP header can carry, as a ``Secret``; ``UsageError`` (without it) if not."""
    if not text:
        raise UsageError(f"{where} is empty")
    if not _TOKEN_CHARS.fullmatch(text):
        raise UsageError(
            f"{where} holds characters an HTTP header cannot carry (spaces, line breaks or "
            "non-ASCII letters); check that it holds the token alone"
        )
    return Secret(text)


_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?"
)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``45m``, ``2h``, ``1h30m``, ``7d`` as seconds; UsageError otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(cleaned)
    # A bare number is seconds only on its own: "1h30" is a slip for 1h30m, not 1h and 30 s.
    bare_tail = cleaned[-1:].isdigit() and any(unit in cleaned for unit in "dhm")
    if match is None or not any(match.groups()) or bare_tail:
        raise UsageError(f"duration {text!r} is not like 90s, 45m, 2h, 1h30m or 7d")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds
