"""What the submitted code says about itself, read by the trusted process (never executed).

Two questions, answered from the syntax tree of the cells the student wrote:

- ``forbidden``: which of the student's functions use a forbidden
  implementation (``np.correlate``, ``F.conv2d``, ``cnnbook.reference``...),
  directly or through another of their functions. Import aliases are resolved
  (``import numpy as np``, ``from torch.nn import functional as F``,
  ``from scipy.signal import correlate2d as c``). This cannot be patched away
  at run time, unlike :func:`cnnbook.checks.forbid_calls`.
- ``tampering``: code that reaches into the grader, IPython, the interpreter,
  builtins or an imported module (IPython hooks and transformers,
  ``showtraceback``, ``sys.excepthook``, ``import builtins``, assignments to or
  ``setattr`` on attributes of imported modules, ``sys.modules`` beyond the
  notebook's own module, dunder attributes of imported objects, dynamic imports,
  ``exec``/``eval``). Such a submission is flagged for review. What a student
  does to their own functions, classes and namespace (wrappers that look
  themselves up in ``globals()``, ``setattr`` on their own functions, their
  own classes' ``__dict__``, ``sys.modules.get(__name__)``) is not tampering.

Only the student's answer cells (and cells they added) are judged; the locked
cells of the release are read for their imports and helper functions, so
that a student's function calling a locked helper that uses a forbidden
implementation is still caught, but the helper itself is never reported.
"""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass, field

from cnnbook.checks import DEFAULT_FORBIDDEN

FORBIDDEN = tuple(DEFAULT_FORBIDDEN) + ("cnnbook.reference", "cnnbook.ops", "torch.nn.Conv1d", "torch.nn.Conv2d",
                                        "torch.nn.MaxPool2d", "torch.nn.AvgPool2d", "torch.nn.BatchNorm2d",
                                        "torch.nn.LayerNorm")

# Methods IPython's own input transformer generates for magics and shell escapes.
MAGIC_METHODS = {"run_line_magic", "run_cell_magic", "system", "getoutput"}
SUSPICIOUS_NAMES = {
    "exec": "calls exec()", "eval": "calls eval()", "compile": "calls compile()",
    "__import__": "imports dynamically with __import__", "__builtins__": "touches __builtins__",
    "breakpoint": "calls breakpoint()",
}
SUSPICIOUS_MODULES = {
    "IPython": "imports IPython", "builtins": "imports builtins", "importlib": "imports importlib",
    "ctypes": "imports ctypes", "gc": "imports gc", "signal": "imports signal", "nbgrader": "imports nbgrader", "nbclient": "imports nbclient",
    "jupyter_client": "imports jupyter_client", "ipykernel": "imports ipykernel", "pickle": None,
}
SUSPICIOUS_ATTRIBUTES = {
    "input_transformers_post": "installs an IPython input transformer",
    "input_transformers_cleanup": "installs an IPython input transformer",
    "input_transformer_manager": "touches IPython's input transformers",
    "ast_transformers": "installs an IPython AST transformer",
    "showtraceback": "replaces IPython's traceback display",
    "_showtraceback": "replaces IPython's traceback display",
    "excepthook": "replaces sys.excepthook",
    "set_custom_exc": "installs a custom exception handler",
    "settrace": "installs a trace function", "setprofile": "installs a profile function",
    "_getframe": "inspects interpreter frames", "f_globals": "inspects interpreter frames",
    "f_back": "inspects interpreter frames", "register_magic_function": "defines magics",
}
# Attributes flagged only on something from outside the student's code (an imported module or
# object, builtins, IPython): on their own objects they are ordinary.
OUTSIDE_ATTRIBUTES = {"events": "registers IPython event hooks"}
# Dunder attributes flagged on anything: they reach every object of the interpreter.
ALWAYS_DUNDERS = {"__builtins__", "__subclasses__"}
OWN_MODULE = {"__main__"}


@dataclass
class Report:
    forbidden: dict[str, list[str]] = field(default_factory=dict)  # function -> forbidden names it uses
    tampering: list[str] = field(default_factory=list)  # human-readable reasons
    syntax_errors: list[str] = field(default_factory=list)


#: CPython 3.11 keeps the AST constructor's recursion depth in interpreter-wide state, so two threads
#: building syntax trees at once can fail with "SystemError: AST constructor recursion depth mismatch"
#: (seen when two grading threads analysed submissions at the same moment). Every tree the grader
#: builds is built under this lock.
AST_LOCK = threading.Lock()


def parse_python(source: str) -> ast.Module:
    """``ast.parse`` under :data:`AST_LOCK` (thread-safe; SyntaxError as usual)."""
    with AST_LOCK:
        return ast.parse(source)


def _parse(source: str):
    try:
        return parse_python(source)
    except SyntaxError:
        pass
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        transformed = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython cannot read it either
        return None
    try:
        return parse_python(transformed)
    except SyntaxError:
        return None


def _dotted(node, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(aliases.get(node.id, node.id))
        return ".".join(reversed(parts))
    return None


#: The library's own implementations: forbidden in every check that forbids anything.
LIBRARY = ("cnnbook.reference", "cnnbook.ops")


def matches(dotted: str, names) -> str | None:
    """The name in ``names`` that ``dotted`` is, or lies inside (``numpy.correlate``, ``cnnbook.reference.x``)."""
    for name in names:
        if dotted == name or dotted.startswith(name + "."):
            return name
    return None


def _root(node):
    """The name an expression starts from (``a`` in ``a.b[0].c()``), or the call ``get_ipython()``."""
    while True:
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "get_ipython":
                return "get_ipython"
            node = node.func
        elif isinstance(node, ast.Name):
            return node.id
        else:
            return None


def _own_module_key(node) -> bool:
    """``__name__`` or ``"__main__"``: the notebook's own module."""
    return (isinstance(node, ast.Name) and node.id == "__name__") or (
        isinstance(node, ast.Constant) and node.value in OWN_MODULE)


class _Visitor(ast.NodeVisitor):
    def __init__(self, aliases, report: Report, judged: bool = True, forbidden=FORBIDDEN):
        self.forbidden = tuple(forbidden)
        self.aliases = aliases
        self.report = report
        self.judged = judged  # an answer cell: its tampering is reported
        self.used: set[str] = set()  # forbidden dotted names used in the current scope
        self.names: set[str] = set()  # bare names referenced (calls to other student functions)

    def flag(self, why: str, node) -> None:
        if self.judged:
            line = getattr(node, "lineno", "?")
            self.report.tampering.append(f"{why} (line {line})")

    def outside(self, node) -> bool:
        """Whether an expression starts from something the student did not write."""
        root = _root(node)
        return root is not None and (root in self.aliases or root in {"get_ipython", "builtins", "__builtins__"})

    def visit_Import(self, node):
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            self._module(alias.name, node)
            hit = matches(alias.name, self.forbidden)
            if hit:
                self.used.add(alias.name)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        self._module(module, node)
        for alias in node.names:
            full = f"{module}.{alias.name}"
            self.aliases[alias.asname or alias.name] = full
            if matches(full, self.forbidden):
                self.used.add(full)

    def _module(self, module: str, node):
        top = module.split(".")[0]
        why = SUSPICIOUS_MODULES.get(top)
        if why:
            self.flag(why, node)

    def visit_Name(self, node):
        self.names.add(node.id)
        if node.id in SUSPICIOUS_NAMES:
            self.flag(SUSPICIOUS_NAMES[node.id], node)
        if node.id == "get_ipython":
            self.flag("uses get_ipython()", node)
        dotted = self.aliases.get(node.id)
        if dotted and matches(dotted, self.forbidden):
            self.used.add(dotted)

    def visit_Constant(self, node):
        if node.value == "__builtins__":
            self.flag("touches __builtins__", node)

    def visit_Attribute(self, node):
        dotted = _dotted(node, self.aliases)
        if dotted and matches(dotted, self.forbidden):
            self.used.add(dotted)
        why = SUSPICIOUS_ATTRIBUTES.get(node.attr)
        if why:
            self.flag(why, node)
        if node.attr in OUTSIDE_ATTRIBUTES and self.outside(node.value):
            self.flag(OUTSIDE_ATTRIBUTES[node.attr], node)
        if dotted == "sys.modules" and not self._own_module_lookup(node):
            self.flag("touches sys.modules beyond its own module", node)
        if node.attr.startswith("__") and node.attr.endswith("__") and (
                node.attr in ALWAYS_DUNDERS or self.outside(node.value)):
            self.flag(f"uses the special attribute {node.attr} of {dotted or 'an imported object'}", node)
        # an assignment to an attribute of an imported module: np.testing.assert_allclose = ...
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            root = node
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and (root.id in self.aliases or root.id in {"np", "numpy", "torch"}):
                self.flag(f"replaces {dotted or node.attr}, which belongs to an imported module", node)
        self.generic_visit(node)

    def _own_module_lookup(self, node) -> bool:
        """``sys.modules[__name__]``, ``sys.modules.get("__main__")``: reading its own module."""
        parent = getattr(node, "_cnnbook_parent", None)
        if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Load):
            return _own_module_key(parent.slice)
        if isinstance(parent, ast.Attribute) and parent.attr == "get":
            call = getattr(parent, "_cnnbook_parent", None)
            return isinstance(call, ast.Call) and call.func is parent and bool(call.args) and _own_module_key(call.args[0])
        return False

    def visit_Call(self, node):
        # get_ipython().run_line_magic(...) is what IPython makes of `%magic`: allowed.
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr in MAGIC_METHODS and isinstance(func.value, ast.Call)
                and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"):
            for arg in node.args:
                self.visit(arg)
            return
        if isinstance(func, ast.Name) and node.args:
            # setattr(np, "load", ...), getattr(np, "corr" + "elate"): only on what the student did not write
            if func.id in ("setattr", "delattr") and self.outside(node.args[0]):
                self.flag(f"calls {func.id}() on {_dotted(node.args[0], self.aliases) or 'an imported object'}", node)
            if (func.id == "getattr" and len(node.args) >= 2 and self.outside(node.args[0])
                    and not (isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str))):
                self.flag("looks up an attribute of an imported module by a computed name (getattr)", node)
        self.generic_visit(node)


def analyse(cells, forbidden=FORBIDDEN) -> Report:
    """Analyse code cells in notebook order: ``(source, judged)`` pairs, or plain sources (all judged).

    ``forbidden``: the dotted names (modules or functions) whose use is reported per function.

    Cells with ``judged`` false (the release's locked cells) contribute imports and helper functions
    but are never reported themselves.
    """
    report = Report()
    aliases: dict[str, str] = {}
    functions: dict[str, tuple[set[str], set[str]]] = {}  # name -> (forbidden used, names referenced)
    answers: set[str] = set()  # functions defined in judged cells
    module_level_forbidden: set[str] = set()
    for number, cell in enumerate(cells):
        source, judged = (cell, True) if isinstance(cell, str) else cell
        tree = _parse(source)
        if tree is None:
            if judged:
                report.syntax_errors.append(f"cell {number}")
            continue
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                child._cnnbook_parent = node
        for node in tree.body:
            visitor = _Visitor(aliases, report, judged, forbidden)
            visitor.visit(node)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                functions[node.name] = (set(visitor.used), set(visitor.names))
                (answers.add if judged else answers.discard)(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and visitor.used:
                # conv = np.correlate; helper = F.conv2d
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        functions[target.id] = (set(visitor.used), set())
                        (answers.add if judged else answers.discard)(target.id)
                module_level_forbidden |= visitor.used
            elif not isinstance(node, (ast.Import, ast.ImportFrom)):
                module_level_forbidden |= visitor.used
    # a function is tainted if it uses a forbidden name or calls a tainted function
    tainted = {name: set(used) for name, (used, _) in functions.items() if used}
    changed = True
    while changed:
        changed = False
        for name, (_, referenced) in functions.items():
            for other in referenced & set(tainted):
                if other != name and not tainted[other] <= tainted.get(name, set()):
                    tainted.setdefault(name, set()).update(tainted[other])
                    changed = True
    report.forbidden = {name: sorted(used) for name, used in tainted.items() if name in answers}
    # keep each reason once, in order
    report.tampering = list(dict.fromkeys(report.tampering))
    return report
