"""Test modules never import each other: shared builders live in tests/factories.py, shared helpers in
plain modules (probgen/inference/testing/ppca.py, tests/reliability/procs.py, ...), fixtures in conftest.py."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_test_module(dotted: str) -> bool:
    last = dotted.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imports_of_test_modules(root: Path) -> list[str]:
    """Every import of a ``test_*`` or ``conftest`` module under ``root``, as ``file:line imports module``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names = [base] + [f"{base}.{a.name}" for a in node.names if node.module is None]
            else:
                continue
            bad += [f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names if _is_test_module(n)]
    return bad


def test_no_test_module_imports_another():
    bad = imports_of_test_modules(TESTS)
    assert not bad, "move the shared code to tests/factories.py (or a helper module):\n" + "\n".join(bad)


def test_the_check_reports_imports_of_test_modules_only(tmp_path):
    (tmp_path / "test_a.py").write_text("from tests.pipelines.test_fit_gan import GAN_FLAGS\n")
    (tmp_path / "test_b.py").write_text("def f():\n    from tests.conftest import TINY_FLAGS\n")
    (tmp_path / "test_c.py").write_text(
        "from tests.factories import TINY_FLAGS\nimport probgen.inference.testing.ppca\n"
    )
    (tmp_path / "test_d.py").write_text("from . import conftest\n")
    bad = imports_of_test_modules(tmp_path)
    assert [b.split(" ")[0] for b in bad] == ["test_a.py:1", "test_b.py:2", "test_d.py:1"], bad
