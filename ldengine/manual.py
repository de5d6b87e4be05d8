"""Manual entries: a function's docstring, parsed into the manual's fields (docs/plugins.md, "Add a function as a plugin").

A stage may have several functions (alternatives); which one is right depends on
the state. Such a function says when to use it in an optional ``When:`` field
(words the student reads) and, beside it in its module, a predicate
``def when_NAME(obs)`` that returns True when it applies (the engine's oracle
runs it in the sandbox). A ``when_`` def is not a manual entry of its own.

The facts a student reads to tell alternatives apart come from the modules too: a
``def fact_NAME(obs)`` is a *fact* of the stage its docstring names (``Stage:``),
its docstring's first line the sentence a selection's query states with yes or no
(what the predicate returns on that stage's input). A plugin that adds an
alternative brings, in the same module, the facts its ``When:`` field depends on.
A fact's words are its own: written as a person states the state, not copied from
any ``When:`` text, so that choosing means reading. A ``fact_`` def is not a manual entry.

Parsing uses ``ast`` only; nothing here executes the code it reads.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
from dataclasses import dataclass, field

from ldengine.errors import ManualError

FIELDS = ("Stage", "Reads", "Returns", "Rules", "Example")
OPTIONAL_FIELDS = ("When",)
PREDICATE_PREFIX = "when_"
FACT_PREFIX = "fact_"


@dataclass(frozen=True)
class ExampleCall:
    """One ``>>> name(args)`` line of an Example and its expected value."""
    function: str
    args: tuple
    expected: object
    text: str


@dataclass(frozen=True)
class ManualEntry:
    """One function of the base, as the manual describes it."""
    name: str            # unique name in the base (a duplicate gets a suffix)
    def_name: str        # the name of the def inside its module
    task: str
    stage: str
    summary: str
    reads: str
    returns: str
    rules: str
    example: str
    examples: tuple[ExampleCall, ...]
    module: str          # filename of the module
    module_version: str
    source_hash: str
    plugin: str
    source: str = field(repr=False, default="")
    when: str = ""       # the manual's When: text (empty for a stage's default function)
    predicate: str = ""  # def name of its applicability predicate, ``when_NAME`` (empty: none)

    @property
    def version(self) -> str:
        return f"{self.module_version}+{self.source_hash[:8]}"

    @property
    def docstring(self) -> str:
        when = [f"When: {self.when}"] if self.when else []
        return "\n".join([self.summary, "", f"Stage: {self.stage}", *when, f"Reads: {self.reads}",
                          f"Returns: {self.returns}", f"Rules: {self.rules}",
                          "Example:", self.example])

    def retrieval_text(self) -> str:
        """The text a retriever indexes and a student reads."""
        when = f" When: {self.when}." if self.when else ""
        return (f"{self.name}: {self.summary} Stage: {self.stage}.{when} Reads: {self.reads}. "
                f"Returns: {self.returns}. Rules: {self.rules}")


@dataclass(frozen=True)
class Fact:
    """One fact a stage's query states: its sentence, and the predicate that says yes or no."""
    name: str            # the def's name without ``fact_``
    def_name: str
    stage: str
    sentence: str
    module: str
    plugin: str
    source_hash: str


def source_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_fields(doc: str, where: str) -> dict[str, str]:
    """Split a docstring into its summary and named fields; ManualError names what is missing."""
    lines = inspect.cleandoc(doc).splitlines()
    fields, current = {"summary": lines[0].strip() if lines else ""}, None
    for line in lines[1:]:
        head = line.split(":", 1)[0].strip()
        if head in FIELDS + OPTIONAL_FIELDS and ":" in line and not line.startswith(" "):
            current = head
            fields[current] = line.split(":", 1)[1].strip()
        elif current:
            sep = "\n" if current == "Example" else " "
            fields[current] = (fields[current] + sep + line.rstrip()).strip(" ")
    missing = [f for f in FIELDS if not fields.get(f)]
    if not fields["summary"] or missing:
        what = ", ".join((["summary"] if not fields["summary"] else []) + missing)
        raise ManualError(f"{where}: docstring lacks manual field(s): {what}")
    return fields


def parse_examples(text: str, where: str) -> tuple[ExampleCall, ...]:
    """Each ``>>> f(literal, ...)`` line with the literal on the following line(s)."""
    calls: list[ExampleCall] = []
    pending: str | None = None
    expected: list[str] = []        # the lines of the pending call's value
    for line in text.splitlines() + [">>>"]:
        stripped = line.strip()
        if stripped.startswith(">>>"):
            if pending is not None:
                calls.append(_example(pending, " ".join(expected), where))
            pending, expected = stripped[3:].strip(), []
        elif stripped:
            expected.append(stripped)
    if not calls:
        raise ManualError(f"{where}: Example has no '>>> call' line")
    return tuple(calls)


def _example(call: str, expected: str, where: str) -> ExampleCall:
    try:
        node = ast.parse(call, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords):
            raise ValueError("not a plain call")
        args = tuple(ast.literal_eval(a) for a in node.args)
        return ExampleCall(node.func.id, args, ast.literal_eval(expected), call)
    except (SyntaxError, ValueError) as exc:
        raise ManualError(f"{where}: Example {call!r} -> {expected!r} is not a literal call "
                          f"and value ({exc})") from None


def module_version(tree: ast.Module, filename: str) -> str:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "VERSION"
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    raise ManualError(f"{filename}: module has no VERSION = \"x.y.z\" string")


def entries_from_source(source: str, filename: str, task: str, plugin: str) -> list[ManualEntry]:
    """The manual entries of every top-level def in a module's source."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ManualError(f"plugin {plugin!r}, {filename}: syntax error line {exc.lineno}: {exc.msg}") from None
    version = module_version(tree, f"plugin {plugin!r}, {filename}")
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    predicates = {node.name[len(PREDICATE_PREFIX):]: node for node in defs
                  if node.name.startswith(PREDICATE_PREFIX)}
    entries = [_entry(node, source, filename, task, plugin, version, predicates.get(node.name))
               for node in defs if not node.name.startswith((PREDICATE_PREFIX, FACT_PREFIX))]
    orphans = sorted(set(predicates) - {e.def_name for e in entries})
    if orphans:
        raise ManualError(f"plugin {plugin!r}, {filename}: predicate(s) "
                          f"{', '.join(PREDICATE_PREFIX + n for n in orphans)} name no function of the module")
    return entries


def _entry(node: ast.FunctionDef, source: str, filename: str, task: str, plugin: str,
           version: str, predicate: ast.FunctionDef | None = None) -> ManualEntry:
    where = f"plugin {plugin!r}, {filename}, function {node.name!r}"
    doc = ast.get_docstring(node)
    if not doc:
        raise ManualError(f"{where}: has no docstring (its manual entry)")
    f = parse_fields(doc, where)
    if predicate is not None and not f.get("When"):
        raise ManualError(f"{where}: has a predicate {predicate.name} but no When: field saying, "
                          "in words, when it applies")
    text = ast.get_source_segment(source, node) or ""
    # The predicate decides when the function is right, so it is part of what an adapter learnt.
    pinned = text + ("\n" + (ast.get_source_segment(source, predicate) or "") if predicate else "")
    return ManualEntry(node.name, node.name, task, f["Stage"], f["summary"], f["Reads"],
                       f["Returns"], f["Rules"], f["Example"], parse_examples(f["Example"], where),
                       filename, version, source_hash(pinned), plugin, text,
                       when=f.get("When", ""), predicate=predicate.name if predicate else "")


def facts_from_source(source: str, filename: str, plugin: str) -> list[Fact]:
    """The facts (``def fact_NAME(obs)``) of a module's source; ManualError names one without a
    sentence or a ``Stage:`` line."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ManualError(f"plugin {plugin!r}, {filename}: syntax error line {exc.lineno}: {exc.msg}") from None
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith(FACT_PREFIX):
            where = f"plugin {plugin!r}, {filename}, fact {node.name!r}"
            lines = inspect.cleandoc(ast.get_docstring(node) or "").splitlines()
            stage = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Stage:")), "")
            if not lines or not lines[0].strip() or not stage:
                raise ManualError(f"{where}: its docstring must start with the fact's sentence and "
                                  "name its stage (a 'Stage:' line)")
            text = ast.get_source_segment(source, node) or ""
            out.append(Fact(node.name[len(FACT_PREFIX):], node.name, stage, lines[0].strip().rstrip("."),
                            filename, plugin, source_hash(text)))
    return out
