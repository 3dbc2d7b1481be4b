"""API keys and who may call: making and hashing keys, the per-key rate limit and daily quota,
and whether a bind address is reachable only from this machine. One rule for the CLI and the API."""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import HTTPException
from sqlalchemy.orm import Session

from models.api_key import ApiKey
from models.crud import charge_key_quota, count_key_request

KEY_PREFIX = "psk_"  # marks a phononscreen key in logs and secret scanners
PREFIX_CHARS = 12  # of a key kept in clear for display: "psk_" + 8 random characters (48 bits), not enough to guess
NAME_MAX = 64
BEARER = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, kw_only=True)
class NewKey:
    """A key as created: `key` is shown once and never stored; `key_hash` and `prefix` are."""

    key: str
    prefix: str
    key_hash: str


def create_key() -> NewKey:
    """A new random key (256 bits) with its stored hash and display prefix."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(key=key, prefix=key[:PREFIX_CHARS], key_hash=hash_key(key))


def hash_key(key: str) -> str:
    """sha256 hex of `key`: a random 256-bit key needs no salt or slow hash to resist guessing."""
    return hashlib.sha256(key.encode()).hexdigest()


def now_utc() -> datetime:
    """The clock of the rate limit and the quota (tests replace it)."""
    return datetime.now(UTC)


def check_key(key: ApiKey | None) -> ApiKey:
    """`key` if it may call: 401 for an unknown key, 403 for a revoked one."""
    if key is None:
        raise HTTPException(401, {"code": "invalid_key", "message": "unknown API key"}, headers=BEARER)
    if key.revoked_at is not None:
        raise HTTPException(403, {"code": "revoked_key", "message": f"API key {key.name!r} was revoked"})
    return key


def count_request(session: Session, *, key: ApiKey, limit_per_min: int) -> None:
    """Count one request of `key` in this minute (and set its last use); 429 with Retry-After above
    `limit_per_min` (0: counted for last use only, never refused)."""
    now = now_utc()
    seconds = now.timestamp()
    count = count_key_request(session, key_id=key.id, window_min=int(seconds // 60), now=now)
    if limit_per_min and count > limit_per_min:
        retry_after = max(1, math.ceil(60 - seconds % 60))
        raise HTTPException(
            429,
            {"code": "rate_limited", "message": f"more than {limit_per_min} requests in this minute for this key"},
            headers={"Retry-After": str(retry_after)},
        )


def refuse_if_quota_spent(key: ApiKey, *, quota: int) -> None:
    """429 before any work when `key` has no structure left today (as its row was read)."""
    day, _ = _day_and_seconds_left()
    if quota and key.quota_day == day and key.quota_used >= quota:
        _quota_exceeded(quota=quota, used=key.quota_used, structures=0)


def charge_quota(session: Session, *, key: ApiKey, structures: int, quota: int) -> None:
    """Charge `structures` accepted structures to `key`'s quota for today (UTC), in the caller's
    transaction; 429 with Retry-After (and no charge) when they do not fit. 0 = no quota."""
    if not quota:
        return
    day, _ = _day_and_seconds_left()
    if charge_key_quota(session, key_id=key.id, day=day, structures=structures, limit=quota) is None:
        used = key.quota_used if key.quota_day == day else 0  # as read at the request's start: for the message
        _quota_exceeded(quota=quota, used=used, structures=structures)


def _day_and_seconds_left() -> tuple[int, int]:
    seconds = now_utc().timestamp()
    return int(seconds // 86400), max(1, math.ceil(86400 - seconds % 86400))


def _quota_exceeded(*, quota: int, used: int, structures: int) -> None:
    _, retry_after = _day_and_seconds_left()
    message = f"daily quota of {quota} structures per key: {used} used today"
    if structures:
        message += f", this batch would add {structures}"
    raise HTTPException(429, {"code": "quota_exceeded", "message": message}, headers={"Retry-After": str(retry_after)})


def is_loopback(host: str) -> bool:
    """True when `host` binds only this machine's loopback (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything: treat it as reachable
