"""offswitchd's HTTP API (docs/openapi.yaml), over its Unix socket or loopback TCP with a token.

Blocking calls on the standard library's http.client; the sandbox runs them in worker threads.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

DEFAULT_SOCKET = "/run/offswitch/offswitchd.sock"


class OffswitchAPIError(Exception):
    """offswitchd answered with an error: its HTTP status, `error.code` and `error.message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"offswitchd: {message} ({code}, HTTP {status})")


class OffswitchUnreachableError(ConnectionError):
    """No offswitchd answered where the configuration said it would."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("offswitchd")
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class OffswitchClient:
    """Where offswitchd is: a Unix socket (default `$OFFSWITCH_SOCKET`, then
    /run/offswitch/offswitchd.sock), or `url` (http://127.0.0.1:PORT) with a bearer token."""

    socket_path: str | None = None
    url: str | None = None
    token: str | None = None

    @property
    def where(self) -> str:
        return self.url or self.socket_path or os.environ.get("OFFSWITCH_SOCKET") or DEFAULT_SOCKET

    def _connection(self) -> http.client.HTTPConnection:
        if self.url:
            parsed = urllib.parse.urlsplit(self.url)
            if parsed.scheme != "http" or not parsed.hostname:
                raise ValueError(f"url: {self.url!r} is not http://HOST:PORT")
            return http.client.HTTPConnection(parsed.hostname, parsed.port or 80)
        return _UnixConnection(self.where)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        json_body: Any = None,
        query: dict[str, str] | None = None,
        length: int | None = None,
    ) -> tuple[int, bytes]:
        """One request; returns (status, body). Error replies raise OffswitchAPIError. `body` is
        bytes, or a file object sent as it is read (then `length` gives Content-Length)."""
        headers = {}
        if length is not None:
            headers["Content-Length"] = str(length)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/octet-stream"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        connection = self._connection()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (FileNotFoundError, ConnectionRefusedError) as error:
            raise OffswitchUnreachableError(
                f"offswitchd is not running at {self.where} ({error.strerror}); start it with `offswitchd` "
                "(docs/daemon.md) or set OFFSWITCH_SOCKET"
            ) from error
        finally:
            connection.close()
        if response.status >= 400:
            code, message = "http_error", data.decode(errors="replace")
            try:
                error = json.loads(data)["error"]
                code, message = error["code"], error["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise OffswitchAPIError(response.status, code, message)
        return response.status, data

    def upload(self, path: str, file: "os.PathLike[str] | str", query: dict[str, str] | None = None) -> Any:
        """POSTs a file's bytes, streamed (an image archive to `/v1/images`); returns the JSON reply."""
        size = os.stat(file).st_size
        with open(file, "rb") as handle:
            _, data = self.request("POST", path, body=handle, query=query, length=size)
        return json.loads(data) if data else None

    def json(self, method: str, path: str, json_body: Any = None) -> Any:
        _, data = self.request(method, path, json_body=json_body)
        return json.loads(data) if data else None
