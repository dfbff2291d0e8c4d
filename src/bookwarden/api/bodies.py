"""Request bodies, in one place for every route: bounded in size, and JSON objects naming each key once.

- **Size.** A route reads a body of at most DEFAULT_LIMIT bytes unless it declares more with
  `@limit(n)` under its route decorator (the publisher catalogue upload, the SAML settings). A larger
  body is refused with 413 before it is read: at once when its Content-Length says so, otherwise
  (chunked) as soon as the bytes received pass the limit, so no more than the limit is ever held. A
  route that never reads its body reads none of it, whatever its size.
- **Duplicate keys.** `{"role": "patron", "role": "tenant_admin"}` means different things to different
  parsers (Python keeps the last, others the first, some refuse), so a proxy, a firewall rule or a log
  reader that looked at one value would not see the one acted on. Every JSON body is refused with 422
  when any object in it names a key twice.
- **Payment and bank data.** The platform never stores card or bank numbers, wherever a caller puts
  them: a role's description, a display name, a disclosure's purpose, a tenant's name... Every string
  (and every key and integer) of every JSON body is screened here, in one place, with the detector of
  core/sensitive.py; a body holding one is refused with 422 `sensitive-data-refused` naming the field,
  before any route sees it. Text files (the catalogue CSV) are screened by their importer, which both
  the API and the console use.

Pure ASGI, wrapping `receive` only: nothing is added around responses, so streamed exports pass
untouched. The body is first read after routing, so the limit is the matched route's.

FastAPI's own `max_body_size` stays unset: its 413 is plain text sent from outside the exception
handlers (no problem+json), and it offers no place for the duplicate-key check, which needs the same
bounded read.
"""

from __future__ import annotations

import email.message
import json
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bookwarden.api.problems import FieldError, ProblemException
from bookwarden.core.sensitive import SensitiveDataRefused, find_sensitive

DEFAULT_LIMIT = 1024 * 1024  # every JSON body of the API fits many times over (the largest: 10,000 patron ids)
_DECLARED = "bookwarden_body_limit"
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def limit(max_bytes: int) -> Callable[[Endpoint], Endpoint]:
    """Decorator, under the route's: this route reads bodies of up to `max_bytes` (instead of DEFAULT_LIMIT)."""

    def declare(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _DECLARED, max_bytes)
        return endpoint

    return declare


def limit_of(route: object) -> int:
    return getattr(getattr(route, "endpoint", None), _DECLARED, DEFAULT_LIMIT)


_MACHINE_MADE = "bookwarden_body_machine_made"


def machine_made(*fields: str, reason: str) -> Callable[[Endpoint], Endpoint]:
    """Decorator, under the route's: these top-level fields of the body are documents a machine made
    (a signed erasure certificate handed back to be checked, a WebAuthn credential from the browser),
    kept, if at all, only as that machine made them; their free-form content is not screened for
    payment data, which could only refuse a genuine document whose numbers happen to be shaped like
    a card's. Every other field of the body still is. Say why in `reason`."""

    def declare(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _MACHINE_MADE, frozenset(fields))
        return endpoint

    if not fields or not reason:
        raise ValueError("name the machine-made fields and say why they are not screened")
    return declare


def machine_made_fields(route: object) -> frozenset[str]:
    return getattr(getattr(route, "endpoint", None), _MACHINE_MADE, frozenset())


class RequestBodies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, _BoundedBody(scope, receive), send)


class _BoundedBody:
    """The `receive` the application sees."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope, self.receive = scope, receive
        self.limit: int | None = None
        self.received = 0

    async def __call__(self) -> Message:
        if self.limit is None:
            return await self._first()
        return await self._next()

    async def _first(self) -> Message:
        headers = Headers(scope=self.scope)
        self.limit = limit_of(self.scope.get("route"))
        declared = _content_length(headers)
        if declared is not None and declared > self.limit:
            raise _too_large(self.limit)
        if not _is_json(headers):
            return await self._next()
        body = await self._whole()
        _screen(body, machine_made=machine_made_fields(self.scope.get("route")))
        return {"type": "http.request", "body": body, "more_body": False}

    async def _next(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise _too_large(self.limit)
        return message

    async def _whole(self) -> bytes:
        chunks = []
        while True:
            message = await self._next()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()  # what Starlette raises while reading a body the client gave up on
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _is_json(headers: Headers) -> bool:
    """The content types FastAPI parses as JSON (and, with strict content types, only those)."""
    content_type = headers.get("content-type")
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _too_large(limit: int) -> ProblemException:
    return ProblemException(
        413,
        "content-too-large",
        "Content too large",
        f"the request body is over this route's limit of {limit} bytes, so it was refused before being read in "
        f"full and nothing was stored; send at most {limit} bytes",
    )


class _KeysTwice(dict):
    """A JSON object that named some key more than once (the keys, in order of their second naming)."""

    twice: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found
    repeated = _KeysTwice(found)
    seen: set[str] = set()
    repeated.twice = [key for key, _ in pairs if key in seen or seen.add(key)]
    return repeated


def _screen(body: bytes, *, machine_made: frozenset[str] = frozenset()) -> None:
    """Refuse a JSON body that names a key twice in one object or holds payment or bank data (outside
    the fields its route declares machine-made)."""
    try:
        document = json.loads(body, object_pairs_hook=_object)
    except (ValueError, RecursionError):
        return  # not JSON: FastAPI's own parse refuses it, as it always has
    pending: deque[tuple[tuple[str, ...], Any]] = deque([((), document)])
    while pending:  # no recursion: a deeply nested body must not exhaust the stack here
        path, value = pending.popleft()
        payment_data = not (path and path[0] in machine_made)
        if isinstance(value, _KeysTwice):
            key = value.twice[0][:64]
            field = ".".join((*path, key))
            raise ProblemException(
                422,
                "validation-error",
                "Invalid request",
                f"{field}: the key {key!r} appears more than once in one JSON object; send each key once "
                "(nothing was stored)",
                [FieldError(field=field, message="duplicate key")],
            )
        if isinstance(value, dict):
            for key in value if payment_data else ():
                _refuse_payment_data(str(key), (*path, "(a key)"))  # the key is the finding: never echoed
            pending.extend(((*path, str(k)), v) for k, v in value.items())
        elif isinstance(value, list):
            pending.extend(((*path, str(i)), v) for i, v in enumerate(value))
        elif payment_data and (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            _refuse_payment_data(str(value), path)


def _refuse_payment_data(text: str, path: tuple[str, ...]) -> None:
    finding = find_sensitive(text)
    if finding is None:
        return
    refused = SensitiveDataRefused(".".join(path) or "(body)", finding)
    # A problem raised while the body is read reaches the handlers as is; any other error would be
    # turned into a bare 400 by the framework's body parsing.
    raise ProblemException(
        422,
        "sensitive-data-refused",
        "Sensitive data refused",
        f"{refused} Nothing was stored.",
        [FieldError(field=refused.field, message=f"looks like a {finding.kind}")],
    )
