"""Mutation testing of ``refimpl/`` against the conformance suite (``make mutation``).

For each mutation point (a comparison, a boolean constant, an ``x + 1``/``x - 1``, a ``not``),
a copy of the package gets that one change and ``python -m refimpl.conformance`` runs against it
in process. A run that fails or times out kills the mutant. Prints each survivor and the score.
Not part of ``make check``: it takes minutes.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWAPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


def points(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            yield node, "compare"
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield node, "bool"
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            yield node, "arith"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not"


def mutate(source: str, index: int) -> tuple[str, str] | None:
    tree = ast.parse(source)
    for i, (node, kind) in enumerate(points(tree)):
        if i != index:
            continue
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            node.ops[0] = SWAPS[type(node.ops[0])]()
        elif isinstance(node, ast.Constant):
            node.value = not node.value
        elif isinstance(node, ast.BinOp):
            node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        elif isinstance(node, ast.UnaryOp):
            return ast.unparse(_drop_not(tree, node)), f"{kind} at line {line}"
        return ast.unparse(tree), f"{kind} at line {line}"
    return None


def _drop_not(tree: ast.AST, target: ast.UnaryOp) -> ast.AST:
    class Drop(ast.NodeTransformer):
        def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
            self.generic_visit(node)
            return node.operand if node is target else node

    result = Drop().visit(tree)
    assert isinstance(result, ast.AST)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("modules", nargs="*", default=[], help="refimpl/*.py files to mutate")
    parser.add_argument("--timeout", type=float, default=90.0)
    options = parser.parse_args()
    modules = [Path(m) for m in options.modules] or sorted(
        p for p in (ROOT / "refimpl").glob("*.py") if p.name not in ("__init__.py", "cli.py")
    )
    killed = survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "refimpl", work / "refimpl")
        shutil.copytree(ROOT / "spec", work / "spec")
        shutil.copytree(ROOT / "conformance", work / "conformance")
        for module in modules:
            rel = module.resolve().relative_to(ROOT)
            original = (ROOT / rel).read_text()
            index = 0
            while (mutated := mutate(original, index)) is not None:
                text, where = mutated
                (work / rel).write_text(text)
                try:
                    run = subprocess.run(
                        [sys.executable, "-m", "refimpl.conformance", "--out", str(work / "b")],
                        cwd=work,
                        capture_output=True,
                        timeout=options.timeout,
                    )
                    dead = run.returncode != 0
                except subprocess.TimeoutExpired:
                    dead = True
                if dead:
                    killed += 1
                else:
                    survived += 1
                    print(f"survived: {rel} {where}", flush=True)
                index += 1
            (work / rel).write_text(original)
    total = killed + survived
    score = 100.0 * killed / total if total else 0.0
    print(f"mutation score: {killed}/{total} killed ({score:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
