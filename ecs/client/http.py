# -*- test-case-name: tests.test_client_cli -*-
"""
A small blocking HTTP client for the ECA's JSON API and event stream, for
the C{ecs} command line.

The command line is a short-lived process of its own, not an agent: plain
blocking C{http.client} with a timeout on every request and on every
read of the event stream is the simplest correct thing here (the rule
"the reactor never blocks" is about agents).

Every failure is a L{ClientError} carrying the exit code scripts rely on
(L{EXIT_REFUSED}, L{EXIT_AUTH}, L{EXIT_UNREACHABLE}, L{EXIT_TIMEOUT}) and a
message naming what was wrong, with the server's C{reason} when it gave
one (L{ecs.client.errors}).  Credentials (URL, user, token) live in one
file of the user's config directory (L{ecs.client.credentials}; both are
re-exported here).
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ecs.client.credentials import (
    config_dir,
    credentials_path,
    delete_credentials,
    load_credentials,
    normalise_url,
    save_credentials,
)
from ecs.client.errors import ClientError, StreamTimeout, exit_code_for
from ecs.client.errors import reason as _reason
from ecs.exits import EXIT_AUTH, EXIT_OK, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_USAGE

DEFAULT_URL = "http://127.0.0.1:8080"
MAX_RESPONSE = 64 << 20
MAX_SSE_LINE = 1 << 20
IDLE = 40.0
"""Seconds of silence after which an event stream counts as dead (the ECA sends a keep-alive every 15 s)."""


def partition_path(partition: str) -> str:
    """C{/api/partitions/<id>}, the id quoted."""
    return "/api/partitions/" + urllib.parse.quote(partition, safe="")


# -- the client ------------------------------------------------------------------------


class Client:
    """
    Blocking calls to one ECA; every call has C{timeout} seconds.  Plain
    C{http.client} (one connection per call): no proxies, no redirects
    followed (the bearer token must not travel elsewhere), and the event
    stream's socket timeout can follow a deadline.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0, cafile: str | None = None) -> None:
        self.url = normalise_url(url)
        self.token = token
        self.timeout = timeout
        parsed = urllib.parse.urlsplit(self.url)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or ""
        self._port = parsed.port
        self._prefix = parsed.path
        self._context: ssl.SSLContext | None = None
        if self._https:
            try:
                self._context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as e:
                raise ClientError(EXIT_USAGE, f"cannot use CA file {cafile}: {e}") from None

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _open(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        pairs = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        target = self._prefix + path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Accept": "application/json", "User-Agent": "ecs-cli"}
        if data is not None:
            sent["Content-Type"] = "application/json"
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        connection = self._connection(timeout)
        try:
            connection.request(method, target, body=data, headers=sent)
            response = connection.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as e:
            connection.close()
            raise self._network_error(e, timeout) from None
        if response.status >= 300:
            try:
                answer = _parse(_read_limited(response))
            except (OSError, http.client.HTTPException, ValueError):
                answer = None
            finally:
                connection.close()
            raise ClientError(
                exit_code_for(response.status, answer), _reason(response.status, answer), response.status, answer
            )
        return connection, response

    def _network_error(self, error: BaseException, seconds: float) -> ClientError:
        if isinstance(error, (socket.timeout, TimeoutError)):
            return ClientError(EXIT_TIMEOUT, f"{self.url} did not answer within {seconds:g} s")
        if isinstance(error, ssl.SSLError):
            detail = getattr(error, "verify_message", None) or getattr(error, "reason", None) or error
            return ClientError(EXIT_UNREACHABLE, f"TLS with {self.url} failed: {detail}")
        if isinstance(error, socket.gaierror):
            return ClientError(EXIT_UNREACHABLE, f"cannot resolve {self._host}: {error.strerror}")
        if isinstance(error, OSError) and error.strerror:
            return ClientError(EXIT_UNREACHABLE, f"cannot reach the ECA at {self.url}: {error.strerror}")
        if isinstance(error, http.client.HTTPException):
            return ClientError(EXIT_UNREACHABLE, f"the ECA at {self.url} broke the connection: {error!r}")
        return ClientError(EXIT_UNREACHABLE, f"cannot reach the ECA at {self.url}: {error}")

    def call(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        """One request; the parsed JSON answer.  L{ClientError} on any failure."""
        connection, response = self._open(method, path, body, query, None, self.timeout)
        answer = _parse(self._read(connection, response))
        if isinstance(answer, _NotJson):
            raise ClientError(
                EXIT_REFUSED, f"{self.url}{path} answered something that is not JSON: is this an ECA?", response.status
            )
        return answer

    def get(self, path: str, **query: Any) -> Any:
        """GET with query parameters (None values left out)."""
        return self.call("GET", path, None, query)

    def post(self, path: str, body: Any = None) -> Any:
        """POST a JSON body."""
        return self.call("POST", path, body)

    def delete(self, path: str) -> Any:
        """DELETE."""
        return self.call("DELETE", path)

    def download(self, path: str) -> tuple[bytes, str]:
        """GET a file that is not JSON (a logbook attachment): its bytes and content type.  L{ClientError}."""
        connection, response = self._open("GET", path, None, None, {"Accept": "*/*"}, self.timeout)
        return self._read(connection, response), response.getheader("Content-Type") or "application/octet-stream"

    def _read(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> bytes:
        """The whole answer (bounded), the connection closed."""
        try:
            return _read_limited(response)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise self._network_error(e, self.timeout) from None
        finally:
            connection.close()

    def events(self, partition: str | None = None, last_event_id: int | None = None) -> EventStream:
        """
        Open C{/api/events}.  The stream is subscribed once this returns:
        events after this point are not missed.  Read it with a deadline
        (L{EventStream.read}); the server sends a keep-alive every 15 s.
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        connection, response = self._open("GET", "/api/events", None, {"partition": partition}, headers, self.timeout)
        stream = EventStream(connection, response, self, resumed_from=last_event_id)
        stream.wait_subscribed()
        return stream


class _NotJson(str):
    pass


def _read_limited(response: http.client.HTTPResponse) -> bytes:
    data = response.read(MAX_RESPONSE + 1)
    if len(data) > MAX_RESPONSE:
        raise ValueError(f"answer larger than {MAX_RESPONSE} bytes")
    return bytes(data)


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _NotJson(raw[:200].decode("utf-8", "replace"))


class SSEParser:
    """
    The C{text/event-stream} format, line by line: C{feed(line)} returns a
    finished C{(id, event, data)} at each blank line (None otherwise).  The
    data of an event is JSON; an event whose data is not is skipped.
    Comments (C{: keep-alive}) and C{retry:} are ignored.
    """

    def __init__(self) -> None:
        self.last_id: int | None = None
        self._id: int | None = None
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[int | None, str, Any] | None:
        """One line without its line ending."""
        if line == "":
            if not self._data and self._event == "message":
                self._id = None
                return None
            event_id, kind, data = self._id, self._event, "\n".join(self._data)
            self._id, self._event, self._data = None, "message", []
            if event_id is not None:
                self.last_id = event_id
            try:
                parsed = json.loads(data) if data else {}
            except ValueError:
                return None
            return event_id, kind, parsed
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "id":
            try:
                self._id = int(value)
            except ValueError:
                self._id = None
        elif field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        return None


class EventStream:
    """
    An open event stream.  After L{wait_subscribed}, a reader thread parses
    the lines (socket timeout L{IDLE}: the server sends a keep-alive every
    15 s, so a longer silence is a dead connection) into a queue; L{read}
    takes the next event before a deadline without disturbing the socket,
    so a caller may wake up often (redraws, quiet checks) and read on.
    """

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        client: Client,
        resumed_from: int | None = None,
    ) -> None:
        """
        @param resumed_from: the C{Last-Event-ID} this stream resumes after.
            A first event numbered at or below it comes from a restarted
            ECA (it numbers its events anew): the stream then ends as if
            closed, with C{parser.last_id} 0, so that the caller's reopen
            replays everything the new ECA has (its partition records too).
        """
        self._connection = connection
        self._response = response
        self._client = client
        self._resumed_from = resumed_from
        self.parser = SSEParser()
        self._queue: queue.Queue[tuple[int | None, str, Any] | BaseException | None] = queue.Queue(maxsize=10000)
        self._thread: threading.Thread | None = None
        self._closed = False

    def _readline(self, seconds: float) -> str | None:
        sock = self._connection.sock
        if sock is not None:
            sock.settimeout(max(seconds, 0.001))
        try:
            raw = self._response.readline(MAX_SSE_LINE)
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise self._client._network_error(e, seconds) from None
        if not raw:
            return None
        return bytes(raw).decode("utf-8", "replace").rstrip("\r\n")

    def wait_subscribed(self) -> None:
        """Read up to the C{retry:} line the server writes just before it subscribes us; start the reader."""
        while True:
            line = self._readline(self._client.timeout)
            if line is None:
                raise ClientError(EXIT_UNREACHABLE, "the ECA closed the event stream")
            if line.startswith("retry:"):
                break
            self.parser.feed(line)
        self._thread = threading.Thread(target=self._reader, name="ecs-events", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        try:
            while not self._closed:
                line = self._readline(IDLE)
                if line is None:
                    self._queue.put(None)
                    return
                event = self.parser.feed(line)
                if event is None:
                    continue
                if self._resumed_from is not None and event[0] is not None:
                    if event[0] <= self._resumed_from:
                        self.parser.last_id = 0  # another ECA: reopen from its first event
                        self._queue.put(None)
                        return
                    self._resumed_from = None
                self._queue.put(event)
        except ClientError as e:
            if not self._closed:
                self._queue.put(e)
        except Exception as e:  # http.client can trip over a socket closed under it
            if not self._closed:
                self._queue.put(ClientError(EXIT_UNREACHABLE, f"the event stream broke: {e!r}"))

    def read(self, deadline: float | None = None) -> tuple[int | None, str, Any] | None:
        """
        The next C{(id, event, data)}; None when the server closed the
        stream.  L{ClientError} with L{EXIT_TIMEOUT} when C{deadline} (a
        C{time.monotonic()} value) passes first: L{StreamTimeout} (the
        stream stays usable); the reader's L{ClientError} when the
        connection broke (then reopen with C{Last-Event-ID} =
        C{parser.last_id}).
        """
        try:
            if deadline is None:
                item = self._queue.get()
            else:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0) or 0.000001)
        except queue.Empty:
            raise StreamTimeout(EXIT_TIMEOUT, "timed out") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Close the connection (the reader thread ends with it)."""
        self._closed = True
        sock = self._connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._connection.close()


__all__ = [
    "DEFAULT_URL",
    "EXIT_AUTH",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Client",
    "ClientError",
    "EventStream",
    "SSEParser",
    "StreamTimeout",
    "config_dir",
    "credentials_path",
    "delete_credentials",
    "exit_code_for",
    "load_credentials",
    "normalise_url",
    "partition_path",
    "save_credentials",
]
