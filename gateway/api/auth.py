"""Bearer tokens mapped to roles; only hashes are kept, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps

from aiohttp import web

from gateway.api.errors import ApiError
from gateway.tokens import hash_token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROLE_KEY = web.RequestKey("role", str)


class TokenBook:
    def __init__(self, hashed_tokens: Mapping[str, str]) -> None:
        self._hashed = dict(hashed_tokens)

    def role_of(self, token: str) -> str | None:
        presented = hash_token(token)
        role = None
        # Compare against every entry so the time taken says nothing about which matched.
        for hashed, candidate in self._hashed.items():
            if hmac.compare_digest(hashed, presented):
                role = candidate
        return role


TOKENS_KEY = web.AppKey("tokens", TokenBook)


def requires(*roles: str) -> Callable[[Handler], Handler]:
    """401 without a valid token, 403 when its role is not one of `roles` (admin may do all;
    a supervisor all an operator may)."""
    allowed = frozenset((*roles, "admin", *(("supervisor",) if "operator" in roles else ())))

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "unauthorized",
                               "Нужен токен: Authorization: Bearer <token> "
                               "/ a bearer token is required",
                               headers={"WWW-Authenticate": "Bearer"})
            role = request.app[TOKENS_KEY].role_of(token.strip())
            if role is None:
                raise ApiError(401, "unauthorized", "Токен не принят / the token is not valid",
                               headers={"WWW-Authenticate": "Bearer"})
            if role not in allowed:
                raise ApiError(403, "forbidden",
                               f"Роль {role} не может это делать / role {role} may not do this")
            request[ROLE_KEY] = role
            return await handler(request)

        return guarded

    return decorate
