"""Golden files: compare a renderer's output with tests/shared/golden/<name>.

Run with TOKENPOOL_UPDATE_GOLDEN=1 to (re)write them, then read the diff before committing.
"""
import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("TOKENPOOL_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"
