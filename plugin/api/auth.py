"""Bearer-token authentication for the HTTP API (RFC 6750 Authorization header)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vocabulary.errors import BrainxaiError


class AuthConfigError(BrainxaiError):
    """The API was asked to start without a token and without the local-dev flag."""


MIN_TOKEN_LENGTH = 16


def check_token_config(token: str | None, allow_no_auth: bool) -> str | None:
    """The token to require, or None when auth is explicitly disabled for local development."""
    if token:
        if len(token) < MIN_TOKEN_LENGTH:
            raise AuthConfigError(
                f"BRAINXAI_API_TOKEN must be at least {MIN_TOKEN_LENGTH} characters long"
            )
        return token
    if allow_no_auth:
        return None
    raise AuthConfigError(
        "refusing to start the HTTP API without a bearer token: set BRAINXAI_API_TOKEN "
        "(or BRAINXAI_ALLOW_NO_AUTH=true for local development only)"
    )


_BEARER = HTTPBearer(auto_error=False, description="BRAINXAI_API_TOKEN")


def bearer_dependency(token: str | None) -> Callable[..., None]:
    """A FastAPI dependency that rejects requests without the right bearer token (401).

    The comparison is constant-time (hmac.compare_digest) to leak nothing about the token.
    """
    expected = token.encode() if token else None

    def require_token(creds: HTTPAuthorizationCredentials | None = Depends(_BEARER)) -> None:
        if expected is None:
            return
        given = creds.credentials.strip().encode() if creds is not None else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token
