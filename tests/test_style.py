"""Habits the code keeps: functions that fit a screen (50 lines at most in bench/), and the
learning-rate multiplier named only where it is declared, applied and preset."""

import ast
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_no_function_in_bench_is_longer_than_50_lines():
    long = []
    for path in sorted(BENCH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > 50:
                    long.append(f"{path.relative_to(BENCH)}:{node.name} ({n} lines)")
    assert not long, long


def test_the_multiplier_is_no_special_case():
    """An axis is data (bench/plan.py): `lr_mult` is declared (config), applied (optim) and
    used by presets (suite), nowhere else."""
    where = {str(p.relative_to(BENCH)) for p in BENCH.rglob("*.py")
             if re.search(r"\blr_mult", p.read_text())}  # fmt: skip
    assert where <= {"config.py", "optim.py", "suite.py"}, where
