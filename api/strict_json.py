"""JSON bodies with a key given twice are refused.

Python's json (and so FastAPI) keeps the last of two equal keys: `{"amount": "1",
"amount": "1000000"}` would be read differently by a bank's own tooling that keeps the
first. A payment instruction must mean one thing, so such a body is a 422 that names
the key, before any route reads it. Every router uses this route class.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.problems import Problem


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def refuse_duplicate_keys(body: bytes) -> None:
    """Raise a 422 problem if any object of this JSON repeats a key. Malformed JSON is
    left to the route's own parsing (which names the position)."""
    try:
        json.loads(body, object_pairs_hook=_pairs)
    except _DuplicateKey as dup:
        key = dup.key[:64]
        raise Problem(
            422,
            f"the JSON body gives the key {key!r} more than once",
            kind="duplicate-json-key",
            errors=[{"field": key, "message": "appears more than once in one object"}],
        ) from None
    except ValueError:  # JSONDecodeError, bad UTF-8: the route's parsing says why
        return


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            if (
                request.method in ("POST", "PUT", "PATCH")
                and _is_json(request.headers.get("content-type"))
                and (body := await request.body())
            ):
                refuse_duplicate_keys(body)
            return await handler(request)

        return strict
