"""Compiling a function base: policy check, RestrictedPython compile, guarded load.

``compile_module`` is for teacher-written modules and loads them at once, in
this process. ``compile_function`` is for untrusted code: it checks and
compiles but does not execute anything; the module is loaded on first use,
inside the isolated worker when it runs there.
"""
from __future__ import annotations

import ast
import copy
import hashlib
import re
from typing import TYPE_CHECKING, Callable, Sequence, cast

from RestrictedPython import compile_restricted_exec

from ldengine.errors import SandboxCompileError, UnknownNameError
from ldengine.sandbox import policy, runtime

if TYPE_CHECKING:
    import types

MAX_SOURCE = 1_000_000  # characters
# Definitions in one module, counted before parsing: RestrictedPython's compile grows with the
# square of their number (4,000 defs: 31 s of the engine's CPU), so a module is refused first.
MAX_DEFS = 500
DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class|lambda)\b|\blambda\b", re.M)
DEFAULT_IMPORTS = ("math",)
MODULE, FUNCTION = "module", "function"


def source_hash(text: str) -> str:
    """sha256 hex digest of ``text``."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CompiledModule:
    """A function base that passed the policy and RestrictedPython's compiler.

    It holds the restricted code object and, once loaded, the module's own
    namespace (fresh per module, restricted builtins, guards, read-only
    constants). Names, sources, hashes, docstrings and constants come from the
    AST, so reading them never executes the code.
    """

    def __init__(self, source: str, filename: str, kind: str,
                 allowed_imports: tuple[str, ...], tree: ast.Module, shape: policy.Shape) -> None:
        """Read everything the AST tells; ``_compile`` then sets the restricted code."""
        self.source, self.filename, self.kind = source, filename, kind
        self.allowed_imports = allowed_imports
        self.source_hash = source_hash(source)
        self.names = tuple(f.name for f in shape.functions)
        self.doc = ast.get_docstring(tree)
        self.warnings: tuple[str, ...] = ()
        self._code: types.CodeType | None = None
        self._constants = {name: ast.literal_eval(value) for name, value in shape.constants.items()}
        self._sources = {f.name: ast.get_source_segment(source, f) or "" for f in shape.functions}
        self._docs = {f.name: ast.get_docstring(f) for f in shape.functions}
        self._hashes = {name: source_hash(text) for name, text in self._sources.items()}
        self._namespace: dict[str, object] | None = None

    def __repr__(self) -> str:
        return (f"<CompiledModule {self.filename!r} {self.kind} "
                f"functions={list(self.names)} hash={self.source_hash[:12]}>")

    @property
    def constants(self) -> dict[str, object]:
        """Module constants, evaluated from the AST (a copy, not the runtime objects)."""
        return copy.deepcopy(self._constants)

    def function_source(self, name: str) -> str:
        """The source text of the ``def`` of ``name``."""
        return self._sources[self._known(name)]

    def function_hash(self, name: str) -> str:
        """sha256 hex digest of ``function_source(name)``."""
        return self._hashes[self._known(name)]

    def function_doc(self, name: str) -> str | None:
        """The docstring of ``name``, read from the AST."""
        return self._docs[self._known(name)]

    def hash_of(self, name: str) -> str:
        """``function_hash(name)``, or the module's hash when there is no such function."""
        return self._hashes.get(name, self.source_hash)

    def _known(self, name: str) -> str:
        if name not in self._hashes:
            raise UnknownNameError(f"{self.filename} defines no function {name!r}")
        return name

    @property
    def loaded(self) -> bool:
        return self._namespace is not None

    def load(self) -> dict[str, object]:
        """Execute the module in its fresh restricted namespace (once); that namespace.

        Raises ``SandboxCompileError`` if loading fails.
        """
        if self._namespace is not None:
            return self._namespace
        try:
            self._namespace = runtime.load(cast("types.CodeType", self._code),    # set by ``_compile``
                                           self.filename, self.allowed_imports, tuple(self._constants))
        except Exception as exc:
            raise SandboxCompileError(
                f"{self.filename}: loading failed: {type(exc).__name__}: {exc}") from None
        return self._namespace

    def runtime_function(self, name: str) -> Callable[..., object]:
        """The guarded callable for ``name``, loading the module if needed.

        Call it through a ``Sandbox``: called directly, nothing copies its
        inputs or checks its output.
        """
        self._known(name)
        return cast("Callable[..., object]", self.load()[name])    # a ``def`` of the module (``_known``)


def compile_module(source: str, filename: str = "<function-base>",
                   allowed_imports: tuple[str, ...] | list[str] = DEFAULT_IMPORTS,
                   *, load: bool = True) -> CompiledModule:
    """Check, compile and load a teacher module (docstring, imports, constants, defs).

    Raises ``SandboxCompileError`` naming the line of every violation, or the
    error that loading raised. ``load=False`` checks and compiles only, for a
    module of unknown origin headed for ``IsolatedSandbox`` (which loads it
    inside the worker): loading is executing.
    """
    module = _compile(source, filename, tuple(allowed_imports), MODULE)
    if load:
        module.load()
    return module


def compile_function(source: str, filename: str = "<generated>",
                     allowed_imports: tuple[str, ...] | list[str] = DEFAULT_IMPORTS) -> CompiledModule:
    """Check and compile untrusted code: exactly one plain ``def`` plus allowed imports.

    Nothing is executed here; the module loads on first use (inside the
    worker, for ``IsolatedSandbox``). Raises ``SandboxCompileError``.
    """
    return _compile(source, filename, tuple(allowed_imports), FUNCTION)


def _compile(source: str, filename: str, allowed_imports: tuple[str, ...],
             kind: str) -> CompiledModule:
    tree = _parse(source, filename)
    try:
        return _check_and_compile(source, filename, allowed_imports, kind, tree)
    except (RecursionError, MemoryError) as exc:  # e.g. 1 + 1 + ... a thousand times
        raise SandboxCompileError(
            f"{filename}: too deeply nested to compile ({type(exc).__name__})") from None


def _check_and_compile(source: str, filename: str, allowed_imports: tuple[str, ...],
                       kind: str, tree: ast.Module) -> CompiledModule:
    shape, errors = policy.check(tree, allowed_imports, single_function=kind == FUNCTION)
    if errors:
        raise SandboxCompileError(_refused(filename, errors))
    module = CompiledModule(source, filename, kind, allowed_imports, tree, shape)
    # transforms ``tree`` in place: RestrictedPython's guards plus the size guards
    result = compile_restricted_exec(tree, filename, policy=runtime.GuardedTransformer)
    if result.errors:
        raise SandboxCompileError(_refused(filename, result.errors))
    module._code, module.warnings = result.code, tuple(result.warnings)
    return module


def _parse(source: str, filename: str) -> ast.Module:
    if type(source) is not str:
        raise SandboxCompileError(f"{filename}: source must be str, not {type(source).__name__}")
    if len(source) > MAX_SOURCE:
        raise SandboxCompileError(f"{filename}: source longer than {MAX_SOURCE} characters")
    defs = sum(1 for _ in DEF.finditer(source))
    if defs > MAX_DEFS:
        raise SandboxCompileError(f"{filename}: more than {MAX_DEFS} definitions (def, class, lambda): {defs}")
    try:
        return ast.parse(source, filename)
    except SyntaxError as exc:
        raise SandboxCompileError(
            f"{filename}: refused:\n  Line {exc.lineno}: SyntaxError: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SandboxCompileError(f"{filename}: cannot parse: {type(exc).__name__}: {exc}") from None


def _refused(filename: str, errors: Sequence[str]) -> str:
    return f"{filename}: refused:\n" + "\n".join(f"  {e}" for e in errors)
