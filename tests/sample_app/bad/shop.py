"""A shop's cart and profile in Redis: the version with a cross-slot transaction and MGET."""

from __future__ import annotations

import redis


def cart_keys(user: str) -> tuple[str, str]:
    return f"cart:{user}:items", f"cart:{user}:total"


def save_cart(r: redis.Redis, user: str, items: dict[str, int]) -> None:
    """Replace the cart and its total in one transaction."""
    items_key, total_key = cart_keys(user)
    with r.pipeline(transaction=True) as p:
        p.delete(items_key)
        p.hset(items_key, mapping=items)
        p.set(total_key, sum(items.values()))
        p.execute()


def profile(r: redis.Redis, user: str) -> list[str | None]:
    """The user's name and e-mail in one round trip."""
    return r.mget(f"user:{user}:name", f"user:{user}:mail")  # type: ignore[return-value]
