"""One convention for transactions: a function that takes a `session` joins its caller's transaction.

It never opens one of its own (tenant_session, platform_session) and nothing but the sessions themselves
(db/session.py, which end the transaction they opened) and their commit hook (the audit append, which sends
its COMMIT with the append) commits. So an action, its audit event
and its notice are written together or not at all, whoever calls it: a route, a command or a job.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "bookwarden"
OPENERS = {"tenant_session", "platform_session"}


def _modules():
    return [p for p in SRC.rglob("*.py") if "migrations" not in p.parts]


def _opened_inside_session_functions(path: Path) -> list[str]:
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) and "session" in [
            a.arg for a in function.args.args + function.args.kwonlyargs
        ]:
            found += [
                f"{function.name}:{call.lineno}"
                for call in ast.walk(function)
                if isinstance(call, ast.Call) and ast.unparse(call.func).split(".")[-1] in OPENERS
            ]
    return found


def test_a_function_taking_a_session_never_opens_a_transaction():
    opened = {str(p.relative_to(SRC)): found for p in _modules() if (found := _opened_inside_session_functions(p))}
    assert opened == {}


def test_the_check_sees_a_transaction_opened_inside(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f(session, db):\n    with tenant_session(db, 1) as other:\n        pass\n")
    assert _opened_inside_session_functions(module) == ["f:2"]


def _commits(call: ast.Call) -> bool:
    """A call that ends a transaction: the driver's or the ORM's commit/rollback, or SQL sent whole that does."""
    name = ast.unparse(call.func)
    if name.endswith((".commit", ".rollback")):
        return True
    return name.split(".")[-1] == "run_simple" and any(word in ast.unparse(call) for word in ("COMMIT", "ROLLBACK"))


def test_only_the_audit_commit_hook_commits():
    committing = {
        str(p.relative_to(SRC))
        for p in _modules()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call) and _commits(node)
    }
    assert committing == {"audit/record.py", "db/session.py"}


def test_the_check_sees_a_commit_sent_as_sql():
    assert _commits(ast.parse("run_simple(connection, b'SELECT 1; COMMIT')").body[0].value)
    assert not _commits(ast.parse("run_simple(connection, b'BEGIN; SELECT 1')").body[0].value)
