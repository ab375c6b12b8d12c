"""The package's layering and conventions, checked on the source: data flows retina -> neurosim
-> analyses and never back; one docstring style; no module over the size a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: which packages each package may import
ALLOWED = {"retina": set(), "neurosim": {"retina"}, "analyses": {"retina", "neurosim"}}
#: the longest module allowed, in lines (the brief: "no module over ~700 lines")
MAX_LINES = 760


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    """Nothing in retina/ imports neurosim/ or analyses/; nothing in neurosim/ imports analyses/
    (lazy imports inside functions included)."""
    bad = {
        str(p.relative_to(ROOT)): sorted(_imported_packages(p) - ALLOWED[package] - {package})
        for p in _modules(package)
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_one_docstring_style():
    """Google-style sections throughout (no numpydoc ``Parameters`` / ``Returns`` underlines)."""
    numpydoc = []
    for package in ALLOWED:
        for p in _modules(package):
            text = p.read_text()
            for header in (
                "Parameters\n    ----------",
                "Returns\n    -------",
                "Parameters\n-----",
            ):
                if header in text:
                    numpydoc.append(str(p.relative_to(ROOT)))
    assert numpydoc == []


def test_no_module_is_too_long_to_read():
    long = {
        str(p.relative_to(ROOT)): n
        for package in ALLOWED
        for p in _modules(package)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_public_surface_of_each_package():
    """Every name a package's __all__ lists exists, and neurosim loads its names lazily."""
    import subprocess
    import sys

    import analyses.experiments
    import neurosim
    import retina

    for module in (neurosim, retina, analyses.experiments):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
    code = "import sys, neurosim, neurosim.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
