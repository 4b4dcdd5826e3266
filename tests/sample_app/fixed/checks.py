"""The shop's own tests: they pass on one Redis server (the gate is what fails the run)."""

from __future__ import annotations

import redis
import shop


def test_cart_total(slotlab_redis: redis.Redis) -> None:
    shop.save_cart(slotlab_redis, "42", {"book": 2, "pen": 3})
    assert slotlab_redis.get(shop.cart_keys("42")[1]) == "5"


def test_profile_reads_two_fields(slotlab_redis: redis.Redis) -> None:
    assert shop.profile(slotlab_redis, "42") == [None, None]
