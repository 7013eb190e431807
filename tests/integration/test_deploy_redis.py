"""deploy/redis/redis.conf, loaded by a real redis-server: a cache that evicts and never saves.

The server runs the deploy file unchanged, with only the port and the directory overridden on
the command line. A few lines of RESP over a socket stand in for a Redis client library.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

REDIS_CONF = h.DEPLOY / "redis" / "redis.conf"


class RedisError(Exception):
    """An error reply (-ERR ..., -OOM ...) from the server."""


class Resp:
    """Just enough of the Redis protocol (RESP2) to send commands and read the replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def send(self, *args: str | bytes | int) -> None:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))

    def read(self) -> object:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("connection closed by redis-server")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2]
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise ValueError(f"unexpected reply {line!r}")

    def call(self, *args: str | bytes | int) -> object:
        self.send(*args)
        reply = self.read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def config_get(self, name: str) -> str:
        reply = self.call("CONFIG", "GET", name)
        assert isinstance(reply, list) and len(reply) == 2, reply
        return reply[1].decode()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    dir: Path
    log: Path


def redis_server() -> str:
    return h.require_binary("redis-server", "apt-get install redis-server")


def start_redis(tmp: Path, config: list[str]) -> Server:
    port = h.free_port()
    log = tmp / "redis.log"
    cmd = [redis_server(), *config, "--port", str(port), "--dir", str(tmp)]
    proc = h.start(cmd, log, cwd=tmp)

    def pong() -> bool:
        client = Resp(port)
        try:
            return client.call("PING") == b"PONG"
        finally:
            client.close()

    h.wait_for(pong, what="redis-server to answer PING", proc=proc, log=log)
    return Server(proc, port, tmp, log)


def shutdown(server: Server) -> None:
    """Plain SHUTDOWN: Redis saves first if any save point is configured."""
    client = Resp(server.port)
    try:
        client.send("SHUTDOWN")
        with pytest.raises((ConnectionError, OSError)):
            client.read()  # the server closes the connection when it exits
    finally:
        client.close()
    assert server.proc.wait(30) == 0, h.log_tail(server.log)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_redis(tmp_path, [str(REDIS_CONF)])
    yield srv
    h.stop(srv.proc)


@pytest.fixture
def client(server: Server) -> Iterator[Resp]:
    conn = Resp(server.port)
    yield conn
    conn.close()


def test_config_is_a_pure_cache(client: Resp) -> None:
    assert client.config_get("save") == ""
    assert client.config_get("appendonly") == "no"
    assert client.config_get("maxmemory") == str(1024**3)
    assert client.config_get("maxmemory-policy") == "allkeys-lru"
    assert client.config_get("protected-mode") == "yes"
    assert client.config_get("bind").split()[0] == "127.0.0.1"


def test_writes_past_maxmemory_evict_old_keys_instead_of_failing(client: Resp) -> None:
    client.call("CONFIG", "SET", "maxmemory", "2mb")
    value = b"x" * 10_000
    for i in range(2000):  # about 20 MB of values into 2 MB
        assert client.call("SET", f"key:{i}", value) == b"OK"  # no -OOM error
    keys = client.call("DBSIZE")
    assert isinstance(keys, int) and 0 < keys < 1000, keys
    assert client.call("GET", "key:1999") == value  # the newest survives
    assert client.call("EXISTS", "key:0") == 0  # the oldest was evicted
    info = client.call("INFO", "stats")
    assert isinstance(info, bytes)
    assert int(info.split(b"evicted_keys:")[1].split(b"\r\n")[0]) > 1000


def test_shutdown_writes_no_snapshot(server: Server, client: Resp) -> None:
    for i in range(100):
        client.call("SET", f"key:{i}", "value")
    shutdown(server)
    assert sorted(p.name for p in server.dir.iterdir()) == ["redis.log"]


def test_without_the_config_shutdown_would_write_a_snapshot(tmp_path: Path) -> None:
    """The check above can fail: Redis's defaults do save at SHUTDOWN."""
    server = start_redis(tmp_path, [])
    try:
        client = Resp(server.port)
        try:
            client.call("SET", "key", "value")
        finally:
            client.close()
        shutdown(server)
        assert (tmp_path / "dump.rdb").exists()
    finally:
        h.stop(server.proc)
