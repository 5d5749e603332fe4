"""Running ``strangler`` as a user does: a subprocess with its own environment."""

from __future__ import annotations

import subprocess
import sys


def strangler(
    env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``strangler ARGS`` under ``env``: exit code, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "strangler.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
