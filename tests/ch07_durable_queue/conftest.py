"""Chapter 7's fixtures: a real, throwaway redis-server for the Redis variant.

Without ``redis-server`` the Redis tests are skipped, with the reason, on a laptop; when the
environment says ``CI=true`` they fail instead, so that CI can never pass without running them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bgcourse import RedisServer, find_redis_server, throwaway_redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if find_redis_server() is None:
        message = "redis-server is not installed, so the Redis variant cannot run (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true, where it must run")
        pytest.skip(message)
    with throwaway_redis() as server:
        yield server
