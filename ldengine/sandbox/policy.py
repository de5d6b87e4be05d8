"""The shape a function base may have, checked on the AST before anything runs.

Loading a module executes it: module-level statements, decorators, default
arguments, annotations and class bodies all run at load time (RestrictedPython
happens to compile with postponed annotations; this check does not rely on
it). So a module may contain only a docstring, allowed imports, constant
assignments of literals, and plain ``def``s whose defaults are immutable
literals and whose annotations are type expressions. ``compile_function`` asks for less still: one ``def``.

Anywhere in the code: no classes, no decorators, no ``global``, no bare
``except:`` (it would swallow the in-process CPU-time alarm), no imports
beyond the allowed ones, and no name that neither the module nor the restricted
builtins define (so ``open``, ``type``, ``getattr``, ``globals``, ``exit`` fail
here with a line number). These checks make errors clear and early; they are
not the security boundary. That is RestrictedPython's compiler plus the guarded
runtime (``runtime.py``), and for untrusted code a separate process.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ldengine.sandbox.runtime import PROVIDED_NAMES

_TYPE_EXPR_NODES = (ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.List,
                    ast.Constant, ast.BinOp, ast.BitOr, ast.Load)


@dataclass
class Shape:
    """What the policy learned about an accepted module."""

    functions: list[ast.FunctionDef] = field(default_factory=list)
    constants: dict[str, ast.expr] = field(default_factory=dict)  # name -> literal

    def names(self) -> list[str]:
        return [f.name for f in self.functions] + list(self.constants)


def check(tree: ast.Module, allowed_imports: tuple[str, ...], *,
          single_function: bool) -> tuple[Shape, list[str]]:
    """The module's shape and the list of policy violations ("Line N: ...")."""
    shape, errors = Shape(), []
    for index, node in enumerate(tree.body):
        problem = _check_top_level(node, index, shape, single_function)
        if problem:
            errors.append(_at(node, problem))
    errors.extend(_check_everywhere(tree, allowed_imports))
    if single_function and len(shape.functions) != 1:
        errors.append(f"Line 1: expected exactly one top-level def, found {len(shape.functions)}")
    return shape, sorted(errors, key=_line_number)


def _line_number(error: str) -> int:
    return int(error.split(":", 1)[0].removeprefix("Line "))


def _at(node: ast.AST, message: str) -> str:
    return f"Line {getattr(node, 'lineno', '?')}: {message}"


def _check_top_level(node: ast.stmt, index: int, shape: Shape,
                     single_function: bool) -> str | None:
    if isinstance(node, ast.FunctionDef):
        duplicate = node.name in shape.names()
        shape.functions.append(node)
        return f"{node.name!r} is defined twice" if duplicate else _check_def(node)
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.ClassDef)):
        return None  # checked wherever they occur
    if index == 0 and _is_docstring(node):
        return None
    if isinstance(node, ast.Assign) and not single_function:
        return _check_constant(node, shape)
    if isinstance(node, ast.AnnAssign):
        return "annotated assignments are not allowed; write NAME = literal"
    what = "only one def (and imports)" if single_function else (
        "only a docstring, imports, constants and plain defs")
    return f"{_describe(node)} at module level is not allowed; {what}"


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _describe(node: ast.AST) -> str:
    names = {ast.Expr: "an expression",
             ast.AsyncFunctionDef: "an async def", ast.Assign: "an assignment"}
    return names.get(type(node), f"the statement `{type(node).__name__.lower()}`")


def _check_constant(node: ast.Assign, shape: Shape) -> str | None:
    targets = node.targets
    if len(targets) != 1 or not isinstance(targets[0], ast.Name):
        return "a module constant must be assigned to a single name"
    if not _is_literal(node.value):
        return f"constant {targets[0].id!r} must be a literal (numbers, strings, tuples, lists, dicts, sets)"
    if targets[0].id in shape.names():
        return f"{targets[0].id!r} is defined twice"
    shape.constants[targets[0].id] = node.value
    return None


def _is_literal(node: ast.expr, immutable: bool = False) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
    if isinstance(node, ast.Tuple):
        return all(_is_literal(e, immutable) for e in node.elts)
    if isinstance(node, (ast.List, ast.Set)) and not immutable:
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict) and not immutable:
        keys = [k for k in node.keys if k is not None]     # None: a ``**mapping`` unpacked
        return len(keys) == len(node.keys) and all(_is_literal(e) for e in keys + node.values)
    return False


def _is_type_expr(node: ast.expr) -> bool:
    return all(isinstance(n, _TYPE_EXPR_NODES) for n in ast.walk(node))


def _check_def(node: ast.FunctionDef) -> str | None:
    args = node.args
    defaults = args.defaults + [d for d in args.kw_defaults if d is not None]
    if not all(_is_literal(d, immutable=True) for d in defaults):
        return (f"default arguments of {node.name!r} must be immutable literals "
                "(numbers, strings, None, tuples of these)")
    every_arg = args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]
    annotations = [a.annotation for a in every_arg if a is not None] + [node.returns]
    if not all(_is_type_expr(a) for a in annotations if a is not None):
        return f"annotations of {node.name!r} must be type expressions"
    return None


def _check_everywhere(tree: ast.Module, allowed: tuple[str, ...]) -> list[str]:
    errors, loaded = [], []
    for node in ast.walk(tree):
        problem = _check_node(node, allowed)
        if problem:
            errors.append(_at(node, problem))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            loaded.append(node)
    bound = _bound_names(tree) | PROVIDED_NAMES
    errors.extend(_at(n, f"name {n.id!r} is not available in the sandbox")
                  for n in loaded if n.id not in bound and not n.id.startswith("_"))
    return errors


def _check_node(node: ast.AST, allowed: tuple[str, ...]) -> str | None:
    if isinstance(node, ast.ClassDef):
        return "class definitions are not allowed"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.decorator_list:
        return "decorators are not allowed"
    if isinstance(node, ast.Global):
        return "'global' is not allowed: functions may not change module state"
    if isinstance(node, ast.ExceptHandler) and node.type is None:
        # it would also catch the in-process sandbox's CPU-time alarm
        return "a bare 'except:' is not allowed; name the exceptions (except Exception:)"
    if isinstance(node, ast.Import):
        return _check_import([a.name for a in node.names], allowed)
    if isinstance(node, ast.ImportFrom):
        if node.level:
            return "relative imports are not allowed"
        return _check_import([node.module or ""], allowed)
    return None


def _check_import(modules: list[str], allowed: tuple[str, ...]) -> str | None:
    refused = [m for m in modules if m not in allowed or "." in m]
    if refused:
        return f"import of {refused[0]!r} is not allowed (allowed: {', '.join(allowed) or 'none'})"
    return None


def _bound_names(tree: ast.Module) -> set[str]:
    """Every name bound anywhere in the module, in any scope (an over-approximation)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    return bound

