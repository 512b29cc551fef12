# -*- test-case-name: tests.test_client_parts -*-
"""
What every C{ecs} API command runs with: the parsed options, the URL and
token (from C{--url}, the credentials file, C{$ECS_URL}), the HTTP client,
and how to print an answer (text, or the API's JSON with C{--json}).

It lives apart from L{ecs.client.cli} (the commands) and
L{ecs.client.watch} (following a partition), which both need it, so that
neither imports the other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ecs.client.http import (
    DEFAULT_URL,
    EXIT_AUTH,
    EXIT_USAGE,
    Client,
    ClientError,
    credentials_path,
    load_credentials,
    normalise_url,
)

DEFAULT_TIMEOUT = 10.0
"""Seconds for each request."""
DEFAULT_WAIT = 300.0
"""Seconds for C{--wait} and C{watch --until}."""


def use_colour() -> bool:
    """Colour on a terminal, unless C{NO_COLOR} is set."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class Context:
    """What a command needs: the parsed options, the client, how to print."""

    def __init__(self, args: argparse.Namespace, need_login: bool = True) -> None:
        self.args = args
        self.json = bool(getattr(args, "api_json", False))
        self.path = credentials_path()
        try:
            self.credentials = load_credentials(self.path)
        except ClientError:
            if need_login:
                raise
            self.credentials = None  # login replaces a broken file, logout removes it
        given = getattr(args, "api_url", None)
        url = given or (self.credentials or {}).get("url") or os.environ.get("ECS_URL") or DEFAULT_URL
        try:
            self.url = normalise_url(url)
        except ValueError as e:
            raise ClientError(EXIT_USAGE, str(e)) from None
        token = None
        if self.credentials is not None and self.credentials["url"] == self.url:
            token = self.credentials["token"]  # never sent to another URL than the one it came from
        if need_login and token is None:
            raise ClientError(EXIT_AUTH, f"not logged in to {self.url}: run ecs login")
        self.token = token
        timeout = getattr(args, "api_timeout", None)
        self.timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self.wait_timeout = timeout if timeout is not None else DEFAULT_WAIT
        self.client = Client(self.url, token, self.timeout, getattr(args, "api_cacert", None))

    def out(self, text: str, data: Any) -> None:
        """Print C{data} as JSON with C{--json}, else C{text}."""
        if self.json:
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            print(text, end="" if text.endswith("\n") else "\n")
        sys.stdout.flush()


__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_WAIT", "Context", "use_colour"]
