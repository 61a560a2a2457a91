"""Page scripts draw only what they mean to: Streamlit's magic writes any bare expression statement."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_no_bare_string_but_the_module_docstring(script: Path) -> None:
    # A docstring after a constant (or anywhere but the top) is drawn as text on the page.
    body = ast.parse(script.read_text()).body
    stray = [node.lineno for node in body[1:]
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)]
    assert stray == [], f"{script.name}: bare strings at lines {stray} would show on the page; use a comment"
