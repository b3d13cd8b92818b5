"""Save-time checks of user code: compiled in the parent, never executed there."""

from __future__ import annotations

import ast
import warnings

from sandbox.errors import CodeError

CONTRACT = ("reducer", "responder", "idempotency_key", "query", "room")
# A module-level `PRESENCE = True` opts a hook in to JOIN/LEAVE requests from its two-way
# sockets (docs/functions.md, "Presence"); it is listed with the functions when set.
PRESENCE = "PRESENCE"
FILENAME = "hook.py"

# Nodes that open a new scope: names bound inside them are not module-level bindings.
_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)


def check_code(code: str, *, max_bytes: int) -> frozenset[str]:
    """Compile-check `code`; return which of the contract functions it defines with `def`,
    and PRESENCE when it sets `PRESENCE = True`.

    Raises CodeError for a syntax error (with line and column), code over `max_bytes` (UTF-8), or
    a contract name bound at module level by anything other than a plain `def`.
    """
    size = len(code.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise CodeError(f"CodeTooLarge: the code is {size} bytes; the limit is {max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            # SyntaxWarnings (e.g. "is" with a literal) are the user's business, not an error.
            warnings.simplefilter("ignore")
            tree = ast.parse(code, filename=FILENAME, mode="exec")
            compile(tree, FILENAME, "exec", dont_inherit=True)
    except SyntaxError as error:
        raise CodeError(
            f"{type(error).__name__}: {error.msg}",
            line=error.lineno,
            column=error.offset,
        ) from None
    except (ValueError, MemoryError, RecursionError) as error:
        # Null bytes (ValueError on 3.11) and pathological nesting are refused, not crashed on.
        raise CodeError(f"SyntaxError: {error or type(error).__name__}") from None
    return _contract_functions(tree)


def _contract_functions(tree: ast.Module) -> frozenset[str]:
    defined: set[str] = set()
    for node in _module_level(tree.body):
        if _presence_flag(node, defined):
            continue
        if isinstance(node, ast.FunctionDef):
            if node.name in CONTRACT:
                defined.add(node.name)
            continue
        if isinstance(node, ast.AsyncFunctionDef) and node.name in CONTRACT:
            raise CodeError(
                f"ContractError: '{node.name}' must be a plain function (def), not async",
                line=node.lineno,
                column=node.col_offset + 1,
            )
        for name, at in _bound_names(node):
            if name == PRESENCE:
                raise CodeError(
                    "ContractError: PRESENCE must be set as `PRESENCE = True` (or False)",
                    line=getattr(at, "lineno", None),
                    column=getattr(at, "col_offset", 0) + 1,
                )
            if name in CONTRACT:
                raise CodeError(
                    f"ContractError: '{name}' must be a function defined with def",
                    line=getattr(at, "lineno", None),
                    column=getattr(at, "col_offset", 0) + 1,
                )
    return frozenset(defined)


def _presence_flag(node: ast.stmt, defined: set[str]) -> bool:
    """Whether `node` is `PRESENCE = True/False` (read statically, never run here)."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return False
    if not (len(targets) == 1 and isinstance(targets[0], ast.Name) and targets[0].id == PRESENCE):
        return False
    if not (isinstance(value, ast.Constant) and isinstance(value.value, bool)):
        raise CodeError(
            "ContractError: PRESENCE must be True or False",
            line=node.lineno,
            column=node.col_offset + 1,
        )
    if value.value:
        defined.add(PRESENCE)
    return True


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that run in module scope, including inside if/for/while/try/with blocks."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, _SCOPES):
            continue
        for field in ("body", "orelse", "finalbody"):
            out.extend(_module_level(getattr(node, field, None) or []))
        for handler in getattr(node, "handlers", None) or []:
            out.extend(_module_level(handler.body))
        for case in getattr(node, "cases", None) or []:
            out.extend(_module_level(case.body))
    return out


def _bound_names(node: ast.stmt) -> list[tuple[str, ast.AST]]:
    """Names `node` itself binds in module scope (nested statements are visited separately)."""
    if isinstance(node, ast.ClassDef):
        return [(node.name, node)]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [((alias.asname or alias.name).split(".")[0], node) for alias in node.names]
    names: list[tuple[str, ast.AST]] = []
    stack: list[ast.AST] = [node]
    while stack:
        current = stack.pop()
        for child in ast.iter_child_nodes(current):
            if isinstance(child, (*_SCOPES, ast.stmt)):
                continue  # other scopes, and nested statements (visited on their own)
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store | ast.Del):
                names.append((child.id, child))
            elif isinstance(child, ast.ExceptHandler):
                if child.name:
                    names.append((child.name, child))
                continue
            stack.append(child)
    return names
