"""The public entry point is typed: README's own snippet passes mypy --strict in a typed
caller, and what ``strangler.connect`` yields is the facade."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_snippet() -> str:
    """The README's "Swapping it into a chat backend" example, as written there."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if "strangler.connect(Settings())" in b]
    assert len(found) == 1, "README should hold exactly one strangler.connect example"
    return found[0]


def _mypy(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "backend.py"
    path.write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_the_readme_snippet_passes_mypy_strict(tmp_path: Path) -> None:
    result = _mypy(_readme_snippet(), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_call_on_what_connect_yields_fails_mypy(tmp_path: Path) -> None:
    """The check can fail: ``connect`` does not erase the facade's type."""
    code = _readme_snippet() + "\n\nasync def wrong() -> None:\n"
    code += "    async with strangler.connect(Settings()) as db:\n"
    code += "        await db.rename_session(1, 2)  # an int title\n"
    code += "        reveal_type(db)\n"
    result = _mypy(code, tmp_path)
    assert result.returncode == 1
    assert "DualWriteStore" in result.stdout
    assert 'Argument 2 to "rename_session"' in result.stdout
