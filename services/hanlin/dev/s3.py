"""A real S3-compatible server (versitygw, posix backend) on loopback for tests."""

from __future__ import annotations

import os
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hanlin.dev.paths import binary
from hanlin.dev.processes import ProcessGroup, alive, free_port, stop

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """A started S3 server and the environment a client needs to reach it."""

    directory: Path
    env: dict[str, str]

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]


class StartupError(RuntimeError):
    """versitygw exited or never answered."""


def read_env(directory: Path) -> dict[str, str]:
    """Parse DIR/s3.env (KEY=VALUE lines)."""
    env = {}
    for line in (Path(directory) / "s3.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key.removeprefix("export ").strip()] = value.strip()
    return env


def start(directory: Path, *, timeout: float = 60.0) -> S3Server:
    """Start versitygw in DIR with fresh credentials; write DIR/s3.env."""
    directory = Path(directory).resolve()
    group = ProcessGroup(directory, "s3")
    group.check_not_running()
    exe = binary("versitygw")
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "hanlin" + secrets.token_hex(6),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(24),
        "AWS_DEFAULT_REGION": REGION,
    }
    env_file = directory / "s3.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    # Credentials travel in the environment, not argv, so `ps` never shows them.
    child_env = dict(os.environ)
    child_env["ROOT_ACCESS_KEY"] = env["AWS_ACCESS_KEY_ID"]
    child_env["ROOT_SECRET_KEY"] = env["AWS_SECRET_ACCESS_KEY"]
    group.spawn(
        "versitygw",
        [exe, "--port", f"127.0.0.1:{port}", "--region", REGION, "posix", data],
        env=child_env,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(env["AWS_ENDPOINT_URL"], timeout=2)
            break
        except urllib.error.HTTPError:
            break  # an S3 error document (403 without credentials) means it is up
        except (urllib.error.URLError, OSError):
            if not alive(group.pids["versitygw"]):
                stop(directory)
                raise StartupError(
                    f"versitygw exited during startup:\n{group.tail('versitygw')}"
                ) from None
            time.sleep(0.1)
    else:
        stop(directory)
        raise StartupError(
            f"versitygw not answering after {timeout:.0f}s:\n{group.tail('versitygw')}"
        )
    return S3Server(directory=directory, env=env)


__all__ = ["S3Server", "StartupError", "read_env", "start", "stop"]
