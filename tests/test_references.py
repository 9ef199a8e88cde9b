"""Every bib key cited in a docstring as [key] exists in docs/references.bib."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITE = re.compile(r"\[([a-z]+\d{4}[a-z]*)\]")


def test_cited_keys_exist():
    bib = (ROOT / "docs" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    cited = {}
    for path in (ROOT / "src").rglob("*.py"):
        for key in CITE.findall(path.read_text()):
            cited.setdefault(key, path.name)
    assert cited, "no citations found: the pattern is broken"
    missing = {k: f for k, f in cited.items() if k not in keys}
    assert not missing, f"cited but missing from docs/references.bib: {missing}"
