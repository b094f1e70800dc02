"""A throwaway redis-server: it answers, crashes as asked, keeps data only with the append-only file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from bgcourse import (
    QUEUE_URL_VARIABLE,
    RedisNotFoundError,
    RedisServer,
    find_redis_server,
    temporary_queue,
    throwaway_redis,
)


@pytest.fixture
def redis_program() -> Path:
    program = find_redis_server()
    if program is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true, where the Redis tests must run")
        pytest.skip(message)
    return program


def ping(server: RedisServer) -> bool:
    with redis.Redis.from_url(server.url, socket_connect_timeout=2) as client:
        return bool(client.ping())


def test_it_answers_on_loopback_and_leaves_nothing_behind(redis_program: Path) -> None:
    with throwaway_redis() as server:
        assert server.url.startswith("redis://127.0.0.1:")
        assert ping(server)
        pid, folder = server.pid, server.folder
        assert pid is not None
        assert folder.is_dir()
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not folder.exists()


@pytest.mark.parametrize(("appendonly", "kept"), [(False, 0), (True, 3)], ids=["no persistence", "append-only file"])
def test_a_crash_keeps_data_only_with_the_append_only_file(redis_program: Path, appendonly: bool, kept: int) -> None:
    with throwaway_redis(appendonly=appendonly) as server:
        with redis.Redis.from_url(server.url) as client:
            client.rpush("jobs", "a", "b", "c")
        server.kill()
        assert server.pid is None
        server.start()
        with redis.Redis.from_url(server.url) as client:
            assert client.llen("jobs") == kept


def test_starting_twice_is_refused(redis_program: Path) -> None:
    with throwaway_redis() as server, pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_a_missing_program_says_how_to_install_it(tmp_path: Path) -> None:
    with (
        pytest.raises(RedisNotFoundError, match="apt-get install redis-server"),
        throwaway_redis(program=tmp_path / "redis-server"),
    ):
        pass  # pragma: no cover - never reached


def test_a_temporary_queue_on_redis_is_emptied_before_and_after(
    redis_program: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with throwaway_redis() as server:
        monkeypatch.setenv(QUEUE_URL_VARIABLE, server.url)
        with temporary_queue("test") as queue:
            assert queue.url == server.url

            @queue.huey.task()  # type: ignore[untyped-decorator]
            def noop() -> None:
                pass

            noop()
            assert queue.huey.pending_count() == 1
        with redis.Redis.from_url(server.url) as client:
            assert client.keys("huey.*") == []
