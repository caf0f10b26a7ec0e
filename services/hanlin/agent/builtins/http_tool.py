"""The http tool: GET a URL whose host is on an allowlist, within size and time limits."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from hanlin.agent.tooling import Tool, ToolError, function_tool

_KNOWN = {"allowedHosts", "maxBytes", "timeoutSeconds", "maxRedirects"}


def host_allowed(host: str, allowed: list[str]) -> bool:
    """True when `host` equals an entry, or matches a `*.domain` entry."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*.") and (host.endswith(entry[1:]) or host == entry[2:]):
            return True
        if host == entry:
            return True
    return False


def http_tool(config: dict[str, Any] | None = None) -> Tool:
    """The http GET tool; `config.allowedHosts` is required (an empty list allows nothing)."""
    config = dict(config or {})
    unknown = sorted(set(config) - _KNOWN)
    if unknown:
        raise ValueError(f"tools[http].config: unknown fields {unknown} (known: {sorted(_KNOWN)})")
    allowed = config.get("allowedHosts")
    if not isinstance(allowed, list) or not all(isinstance(h, str) for h in allowed):
        raise ValueError("tools[http].config.allowedHosts: required, a list of host names")
    max_bytes = int(config.get("maxBytes", 256 * 1024))
    timeout = float(config.get("timeoutSeconds", 10.0))
    max_redirects = int(config.get("maxRedirects", 3))

    def http_get(url: str) -> str:
        """Fetch a web page or API response with HTTP GET and return its body as text.

        Args:
            url: An absolute http:// or https:// URL on an allowed host.
        """
        current = url
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            # Redirects are followed by hand so that every hop passes the allowlist.
            for _ in range(max_redirects + 1):
                parts = urlsplit(current)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ToolError(f"not an absolute http(s) URL: {current!r}")
                if not host_allowed(parts.hostname, allowed):
                    raise ToolError(f"host {parts.hostname!r} is not allowed (allowed: {allowed})")
                try:
                    with client.stream("GET", current) as response:
                        if response.is_redirect and "location" in response.headers:
                            current = urljoin(current, response.headers["location"])
                            continue
                        body = bytearray()
                        for chunk in response.iter_bytes():
                            body += chunk
                            if len(body) > max_bytes:
                                raise ToolError(f"response larger than {max_bytes} bytes")
                except httpx.TimeoutException:
                    raise ToolError(f"timed out after {timeout:g} s") from None
                except httpx.HTTPError as exc:
                    raise ToolError(f"request failed: {exc}") from None
                text = bytes(body).decode(response.encoding or "utf-8", errors="replace")
                if response.status_code >= 400:
                    raise ToolError(f"HTTP {response.status_code}: {text[:500]}")
                return text
        raise ToolError(f"more than {max_redirects} redirects")

    return function_tool(http_get, name="http", source="builtin")
