"""docs/configuration.md is generated from configs/ and must match them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_current():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_reference.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_config_file_is_in_the_reference():
    text = (ROOT / "docs" / "configuration.md").read_text()
    for path in (ROOT / "configs").rglob("*.yaml"):
        assert f"configs/{path.relative_to(ROOT / 'configs')}" in text, path
