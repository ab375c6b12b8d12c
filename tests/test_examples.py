"""The README's example script runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_learning_script_runs():
    script = ROOT / "docs" / "examples" / "train_a_sheet.py"
    text = script.read_text()
    assert text.split('"""')[2].strip() in (ROOT / "README.md").read_text()  # the README shows it
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "('stimulus', 'column', 'unit')" in proc.stdout
