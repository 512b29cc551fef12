# -*- test-case-name: tests.test_client_parts -*-
"""
Where the C{ecs} command keeps its login: one file (URL, user, token) in
the user's config directory, written atomically with mode 0600 in a 0700
directory; and the URL rules (L{normalise_url}) the token is tied to.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from ecs.client.errors import ClientError
from ecs.exits import EXIT_AUTH


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """C{$XDG_CONFIG_HOME/ecs}, else C{~/.config/ecs}."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "ecs"


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    """Where L{save_credentials} writes."""
    return config_dir(env) / "credentials.json"


def load_credentials(path: Path) -> dict[str, str] | None:
    """
    The stored C{{url, user, token}}, or None when there is no file.

    @raise ClientError: (L{EXIT_AUTH}) the file is unreadable or malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ClientError(EXIT_AUTH, f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ClientError(EXIT_AUTH, f"{path} is not valid JSON: run ecs login again") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) and data.get(k) for k in ("url", "user", "token")
    ):
        raise ClientError(EXIT_AUTH, f"{path} lacks url, user or token: run ecs login again")
    try:
        url = normalise_url(data["url"])
    except ValueError as e:
        raise ClientError(EXIT_AUTH, f"{path}: {e}: run ecs login again") from None
    return {"url": url, "user": data["user"], "token": data["token"]}


def save_credentials(path: Path, url: str, user: str, token: str) -> None:
    """Write C{{url, user, token}} atomically: a 0600 temporary file in a 0700 directory, renamed."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd, temporary = tempfile.mkstemp(prefix=".credentials-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"url": url, "user": user, "token": token}, f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, stat.S_IRUSR | stat.S_IWUSR)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def delete_credentials(path: Path) -> bool:
    """Remove the credentials file; whether there was one."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def normalise_url(url: str) -> str:
    """C{http(s)://host[:port][/prefix]} without a trailing slash; ValueError naming what is wrong."""
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"URL {url!r} must start with http:// or https://")
    if not parsed.hostname:
        raise ValueError(f"URL {url!r} has no host")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise ValueError(f"URL {url!r} must be just scheme://host[:port][/path]")
    try:
        _ = parsed.port  # the property checks the number
    except ValueError:
        raise ValueError(f"URL {url!r} has an invalid port") from None
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, parsed.path.rstrip("/"), "", ""))


__all__ = [
    "config_dir",
    "credentials_path",
    "delete_credentials",
    "load_credentials",
    "normalise_url",
    "save_credentials",
]
