"""A real PostgreSQL server for a test: its own data directory, on 127.0.0.1 at a free port, stopped after.

Debian's ``postgresql`` package (``make test`` installs it) provides the binaries; the server runs as the
``postgres`` user when the tests run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make install` installs Debian's postgresql package")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server(database: str = "pairsim") -> Iterator[str]:
    """Start a throw-away server and yield the SQLAlchemy URL of a fresh ``database`` on it."""
    bin_dir, port = _binaries(), _free_port()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    data = Path(tempfile.mkdtemp(prefix="pairsim-pg-"))
    if as_root:
        shutil.chown(data, "postgres", "postgres")
    user = "postgres" if as_root else os.environ.get("USER", "postgres")

    def run(*command: str) -> None:
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    server = None
    try:
        run(str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", user, "--auth=trust", "-E", "UTF8")
        server = subprocess.Popen(
            [
                *prefix,
                str(bin_dir / "postgres"),
                "-D",
                str(data / "db"),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(data),
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [*prefix, str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start on port {port}")
            time.sleep(0.2)
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database)
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        if server is not None:
            server.terminate()  # SIGTERM: PostgreSQL's smart shutdown
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(data, ignore_errors=True)
