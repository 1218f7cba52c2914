"""Remove secrets from text before a person, a file or the UI sees it: the one redaction function.

Connection URLs carry passwords (``postgresql://u:PW@h/db``, ``?password=``, libpq's
``password=PW`` keyword form) and tokens (``sc://h:15002/;token=T``, ``https://TOKEN@host``,
``?token=``). Drivers repeat them: libpq quotes the whole conninfo in its parse errors, and an
exception's text travels on into status output, logs, alerts, stored errors and the UI. Every
such output passes through `redact`, so there is one list of patterns to get right.

The patterns lean towards hiding too much: a URL's userinfo runs to the *last* ``@`` on its line,
since a password may hold a raw ``@ / # ?`` or space that a URL parser would cut early. An
e-mail address later on the same line is hidden with it: a half-hidden password is not
acceptable, a hidden host name is. Only the standard library is imported, so every layer down
to settings may use this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar, cast
from urllib.parse import unquote

MASK = "***"
T = TypeVar("T")

# `scheme://`, not preceded by a scheme character (so `jdbc:postgresql://` matches its inner URL).
_SCHEME = re.compile(r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*://")

# Keys whose value is a secret wherever it appears: URL query (`?password=`), Spark Connect
# parameters (`;token=`), libpq keyword strings (`password=PW`, `password='P W'`), env-style
# echoes (`ECOM_SPARK_TOKEN=T`: any `word_` prefix). `passfile` names a path and stays.
_SENSITIVE_KEYS = (
    r"password|passwd|pwd|sslpassword|token|secret|api[_-]?key|apikey|private[_-]?key|"
    r"signature|sig|sas|credentials?"
)
_KEY_VALUE = re.compile(
    rf"(?i)(?<![a-z0-9])(?P<key>(?:[a-z0-9]+[_-])*(?:{_SENSITIVE_KEYS}))(?P<sep>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;#,)\]}'\"]*)"
)
# JSON and dict reprs: "password": "x", 'token': 'x'.
_QUOTED_KEY_VALUE = re.compile(
    rf"(?i)(?P<head>[\"'](?:[a-z0-9]+[_-])*(?:{_SENSITIVE_KEYS})[\"']\s*:\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"?|'(?:[^'\\]|\\.)*'?)"
)
# HTTP credentials quoted in an error or a header dump.
_AUTH_HEADER = re.compile(r"(?i)(?P<head>\b(?:proxy-)?authorization[\"']?\s*[:=]\s*)[^\r\n]+")
_BEARER = re.compile(r"(?i)(?P<head>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}")
_HOST_PORT = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_MIN_SECRET_CHARS = 2


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without URL userinfo, secret key=value pairs and HTTP credentials.

    `secrets` are literal values the caller knows to be secret, e.g. `url_secrets(url)` of the
    URL it just used: they are masked too, for errors that quote a fragment no pattern can
    recognise.
    """
    if not text:
        return text
    text = _redact_userinfo(text)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)
    text = _QUOTED_KEY_VALUE.sub(lambda m: f'{m["head"]}"{MASK}"', text)
    text = _AUTH_HEADER.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)
    for secret in sorted(_variants(secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redacted(say: Callable[[str], object]) -> Callable[[str], None]:
    """`say` (print, a logger's method) that redacts each message first: for outputs such as
    the stack's `[up]`/`[heal]` lines, whose many callers each quote an error."""

    def say_redacted(message: str) -> None:
        say(redact(message))

    return say_redacted


def redact_url(url: str) -> str:
    """Where a URL points and nothing more: `scheme://host[:port]/…`.

    Userinfo, path, query and fragment all go, since a token may sit in any of them (a
    Slack-style webhook keeps its secret in the path, which no pattern can tell from a name).
    Never raises: a malformed URL is shown as `scheme://…`.
    """
    match = re.match(r"(?i)^\s*([a-z][a-z0-9+.-]*)://(.*)$", url, re.S)
    if match is None:
        return MASK
    scheme, rest = match.groups()
    after_userinfo = rest.rpartition("@")[2]
    host_port = re.split(r"[/?#;]", after_userinfo, maxsplit=1)[0]
    if host_port and not all(_HOST_PORT.fullmatch(part) for part in host_port.split(",")):
        return f"{scheme}://…"
    hidden = "/…" if len(host_port) < len(after_userinfo.rstrip("/")) else ""
    return f"{scheme}://{host_port}{hidden}"


def redact_data(value: T, secrets: Iterable[str] = ()) -> T:
    """`value` (JSON-like: mappings, lists, tuples, strings) with every string redacted."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return cast(T, redact(value, secrets))
    if isinstance(value, Mapping):
        return cast(T, {key: redact_data(item, secrets) for key, item in value.items()})
    if isinstance(value, list | tuple):
        items = [redact_data(item, secrets) for item in value]
        return cast(T, tuple(items) if isinstance(value, tuple) else items)
    return value


def url_secrets(text: str | None) -> tuple[str, ...]:
    """The secret values in `text` (URL passwords, token and password parameters), each as
    written and percent-decoded, for `redact(..., secrets=...)`."""
    if not text:
        return ()
    found: list[str] = []
    for line in text.splitlines():
        for match in _SCHEME.finditer(line):
            userinfo = _userinfo(line, match.end())
            if userinfo:
                _, colon, password = userinfo.partition(":")
                found.append(password if colon else userinfo)
    found.extend(match["value"].strip("'\"") for match in _KEY_VALUE.finditer(text))
    return tuple(sorted(_variants(found)))


def _variants(secrets: Iterable[str]) -> set[str]:
    """Each secret as written and percent-decoded. Values under two characters are skipped:
    masking every `a` of a message would destroy it and protect nothing."""
    return {
        form
        for secret in secrets
        for form in (secret, unquote(secret))
        if len(form) >= _MIN_SECRET_CHARS and form != MASK
    }


def _userinfo(line: str, after_scheme: int) -> str:
    """The userinfo of the URL whose `scheme://` ends at `after_scheme`: up to the last `@`
    before the next URL on the line; "" when there is none."""
    following = _SCHEME.search(line, after_scheme)
    end = following.start() if following else len(line)
    at = line.rfind("@", after_scheme, end)
    return line[after_scheme:at] if at >= 0 else ""


def _redact_userinfo(text: str) -> str:
    """Every `scheme://user:password@` as `scheme://user:***@` (`scheme://***@` when the user
    part is not a plain name: it may be a token)."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if "://" not in line:
            continue
        out: list[str] = []
        position = 0
        for match in _SCHEME.finditer(line):
            if match.start() < position:  # inside a userinfo hidden already
                continue
            userinfo = _userinfo(line, match.end())
            out.append(line[position : match.end()])
            position = match.end()
            if userinfo:
                user, colon, _ = userinfo.partition(":")
                plain_user = colon and re.fullmatch(r"[A-Za-z0-9._-]{1,63}", user)
                out.append(f"{user}:{MASK}@" if plain_user else f"{MASK}@")
                position += len(userinfo) + 1
        out.append(line[position:])
        lines[index] = "".join(out)
    return "\n".join(lines)
