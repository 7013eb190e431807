"""Prometheus's HTTP API (GET /api/v1/query and /api/v1/query_range), standard library only:
every answer checked, every failure one line (HistoryError) that names the URL, never its
credentials (a user:password in the URL is sent as basic auth)."""

from __future__ import annotations

import http.client
import math
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from listener.core.text import one_line, quoted, redact_url
from listener.web import client

MAX_BYTES = 128 * 2**20  # a range query of 1000 series of 1000 points is about 30 MB
QUERY = "/api/v1/query"
QUERY_RANGE = "/api/v1/query_range"


class HistoryError(Exception):
    """One line for the user, naming the URL and what is wrong."""


@dataclass(frozen=True)
class Series:
    """One series of an answer: its labels and its (unix time, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


class Prometheus:
    """Prometheus's HTTP API, each answer checked; every failure is a HistoryError."""

    def __init__(self, url: str, timeout: float) -> None:
        self.shown = _checked_url(url)
        self.base = url.rstrip("/")  # a user:password in it is sent to that host only
        self.headers = {"Accept": "application/json"}
        self.timeout = timeout

    def time(self) -> float:
        """Prometheus's clock; also the first proof that this is Prometheus."""
        data = self._data(QUERY, {"query": "time()"})
        self._expect(data, "scalar")
        try:
            return float(data["result"][0])
        except (TypeError, ValueError, IndexError, KeyError):
            raise self._not_api(f"{QUERY} answered a malformed scalar") from None

    def instant(self, query: str, at: float) -> list[Series]:
        data = self._data(QUERY, {"query": query, "time": timestamp(at)})
        self._expect(data, "vector")
        return self._parse(data["result"], lambda r: (r["value"],))

    def range(self, query: str, start: float, end: float, step: str) -> list[Series]:
        params = {"query": query, "start": timestamp(start), "end": timestamp(end), "step": step}
        data = self._data(QUERY_RANGE, params)
        self._expect(data, "matrix")
        return self._parse(data["result"], lambda r: r["values"])

    def _data(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """The `data` of a successful answer."""
        # Prometheus gives up on the query when this client would
        params = {**params, "timeout": duration(round(self.timeout * 1000))}
        status, kind, body = self._get(f"{self.base}{path}?{urllib.parse.urlencode(params)}")
        try:
            answer = client.loads(body)
        except ValueError as exc:
            raise self._not_api(_not_json(path, status, kind, body, exc)) from None
        if not isinstance(answer, dict):
            raise self._not_api(f"{path} answered JSON that is no object")
        if answer.get("status") == "error":
            raise HistoryError(f"Prometheus at {self.shown} answered {path} with an error: "
                               f"{quoted(answer.get('errorType'))}: {quoted(answer.get('error'))}")
        data = answer.get("data")
        if status != 200 or answer.get("status") != "success" or not isinstance(data, dict) \
                or not isinstance(data.get("resultType"), str) or "result" not in data:
            said = f"HTTP {status}" if status != 200 else 'no status "success" with data.resultType'
            raise self._not_api(f"{path} answered JSON with {said}")
        return data

    def _get(self, url: str) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body); an HTTP error status is an answer too."""
        try:
            answer = client.get(url, self.timeout, MAX_BYTES, self.headers)
        except client.Refused as exc:
            raise self._not_api(str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        return answer.status, answer.content_type, answer.body

    def _expect(self, data: dict[str, Any], kind: str) -> None:
        if data["resultType"] != kind:
            raise self._not_api(f"a {quoted(data['resultType'])} came where a {kind} was due")

    def _parse(self, result: Any, points: Callable[[Any], Iterable[Any]]) -> list[Series]:
        """Every series checked: labels are strings, a point is [finite time, "value"]; a value
        that is no finite number (NaN, +Inf) says nothing about memory and is left out."""
        try:
            return [Series(_labels(r["metric"]), _points(points(r))) for r in result]
        except (TypeError, ValueError, KeyError, AttributeError):
            raise self._not_api("a malformed result") from None

    def _unreachable(self, reason: object) -> HistoryError:
        return HistoryError(f"cannot reach Prometheus at {self.shown}: {client.why(reason, self.timeout)}")

    def _not_api(self, detail: str) -> HistoryError:
        return HistoryError(f"{self.shown} does not answer like Prometheus's HTTP API ({detail}): "
                            "give the address of the Prometheus server, e.g. http://127.0.0.1:9090")


def _checked_url(url: str) -> str:
    """The URL as errors show it (without credentials), or HistoryError if it is no http(s) URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise HistoryError(f"{quoted(url)} is not the http(s) URL of a Prometheus server "
                           "(e.g. http://127.0.0.1:9090)")
    return one_line(redact_url(url))


def _labels(metric: Any) -> dict[str, str]:
    if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
        raise TypeError("labels are no strings")
    return metric


def _points(raw: Iterable[Any]) -> tuple[tuple[float, float], ...]:
    kept = []
    for at, value in raw:
        if not isinstance(at, (int, float)) or not isinstance(value, str):
            raise TypeError("a point is no [time, \"value\"]")
        number = float(value)
        if math.isfinite(number):
            kept.append((float(at), number))
    return tuple(kept)


def _not_json(path: str, status: int, kind: str, body: bytes, exc: ValueError) -> str:
    if status != 200:
        return f"HTTP {status} for {path}"
    if body.lstrip().startswith((b"# HELP", b"# TYPE")):
        return f"{path} answered metrics text, as an exporter's /metrics does, not JSON"
    if kind == "application/json":
        return f"{path} answered JSON that cannot be read: {quoted(exc)}"
    return f"{path} answered {quoted(kind)}, not JSON"


def timestamp(at: float) -> str:
    return f"{at:.3f}"


def duration(ms: int) -> str:
    """Prometheus duration syntax, which takes whole numbers only: 604800000 -> '604800s'."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
