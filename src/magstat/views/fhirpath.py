"""A parser for the FHIRPath subset that SQL on FHIR v2 views use, into a small syntax tree.

The tree is plain tuples so that three compilers (Python closures, DuckDB SQL, Spark SQL) can
walk it the same way:

- ``("lit", kind, value)``: ``kind`` is ``string``, ``number``, ``bool``, ``date``,
  ``datetime``, ``time`` or ``empty``; ``value`` the Python value (text for dates).
- ``("const", name)``: ``%name`` (``%rowIndex`` included).
- ``("this",)``: ``$this``.
- ``("member", base, name)``: ``base.name``; ``base`` is ``None`` for the input context.
- ``("call", base, name, args)``: ``base.name(args)``; ``args`` are trees, except the type
  argument of ``ofType``/``getReferenceKey`` which is ``("type", name)``.
- ``("index", base, index)``: ``base[index]``.
- ``("binop", op, left, right)`` and ``("neg", operand)``.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import re
from typing import Any

from magstat.errors import InvalidInputError

__all__ = ["Node", "parse"]

Node = tuple[Any, ...]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<datetime>@\d{4}(?:-\d{2}(?:-\d{2})?)?T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<date>@\d{4}(?:-\d{2}(?:-\d{2})?)?)
  | (?P<time>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<quoted>`(?:[^`\\]|\\.)*`)
  | (?P<const>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
  | (?P<special>\$this|\$index|\$total)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>(),.\[\]{}])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "/": "/", "\\": "\\", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

# Binding power of each infix operator (FHIRPath section 10, lowest first).
_INFIX = {
    "implies": 1,
    "or": 2,
    "xor": 2,
    "and": 3,
    "in": 4,
    "contains": 4,
    "=": 5,
    "~": 5,
    "!=": 5,
    "!~": 5,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "|": 7,
    "is": 8,
    "as": 8,
    "+": 9,
    "-": 9,
    "&": 9,
    "*": 10,
    "/": 10,
    "div": 10,
    "mod": 10,
}

_TYPE_ARG_FUNCTIONS = frozenset({"ofType", "getReferenceKey", "is", "as"})


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u" and i + 5 < len(text):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _tokens(text: str, field: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise InvalidInputError(
                field,
                f"FHIRPath syntax error at character {pos + 1}",
                value=text,
                allowed="a FHIRPath expression",
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append((kind, match.group()))
        pos = match.end()
    out.append(("end", ""))
    return out


class _Parser:
    def __init__(self, text: str, field: str) -> None:
        self.text = text
        self.field = field
        self.toks = _tokens(text, field)
        self.pos = 0

    def fail(self, problem: str) -> InvalidInputError:
        return InvalidInputError(self.field, f"FHIRPath syntax error: {problem}", value=self.text)

    def peek(self) -> tuple[str, str]:
        return self.toks[self.pos]

    def take(self) -> tuple[str, str]:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def expect(self, value: str) -> None:
        kind, text = self.take()
        if text != value or kind not in ("op", "ident"):
            raise self.fail(f"expected {value!r}, found {text or 'the end'!r}")

    def infix_op(self) -> str | None:
        kind, text = self.peek()
        if kind == "op" and text in _INFIX:
            return text
        if kind == "ident" and text in _INFIX:
            return text
        return None

    def expression(self, min_power: int = 0) -> Node:
        left = self.unary()
        while True:
            op = self.infix_op()
            if op is None or _INFIX[op] <= min_power:
                return left
            self.take()
            if op in ("is", "as"):
                left = ("call", left, op, [("type", self.type_name())])
                continue
            right = self.expression(_INFIX[op])
            left = ("binop", op, left, right)

    def unary(self) -> Node:
        kind, text = self.peek()
        if kind == "op" and text in ("-", "+"):
            self.take()
            operand = self.unary()
            return ("neg", operand) if text == "-" else operand
        return self.postfix(self.term())

    def type_name(self) -> str:
        kind, text = self.take()
        if kind == "quoted":
            text = _unescape(text[1:-1])
        elif kind != "ident":
            raise self.fail(f"expected a type name, found {text or 'the end'!r}")
        while self.peek() == ("op", "."):
            self.take()
            text = text + "." + self.type_name()
        return text

    def identifier(self) -> str:
        kind, text = self.take()
        if kind == "ident":
            return text
        if kind == "quoted":
            return _unescape(text[1:-1])
        raise self.fail(f"expected a name, found {text or 'the end'!r}")

    def invocation(self, base: Node | None) -> Node:
        name = self.identifier()
        if self.peek() == ("op", "("):
            self.take()
            args: list[Node] = []
            if self.peek() != ("op", ")"):
                while True:
                    if name in _TYPE_ARG_FUNCTIONS:
                        args.append(("type", self.type_name()))
                    else:
                        args.append(self.expression())
                    if self.peek() == ("op", ","):
                        self.take()
                        continue
                    break
            self.expect(")")
            return ("call", base, name, args)
        return ("member", base, name)

    def term(self) -> Node:
        kind, text = self.peek()
        if kind == "number":
            self.take()
            return ("lit", "number", int(text) if "." not in text else float(text), text)
        if kind == "string":
            self.take()
            return ("lit", "string", _unescape(text[1:-1]))
        if kind == "date":
            self.take()
            return ("lit", "date", text[1:])
        if kind == "datetime":
            self.take()
            return ("lit", "datetime", text[1:])
        if kind == "time":
            self.take()
            return ("lit", "time", text[2:])
        if kind == "const":
            self.take()
            name = text[1:]
            if name[:1] in ("`", "'"):
                name = _unescape(name[1:-1])
            return ("const", name)
        if kind == "special":
            self.take()
            if text != "$this":
                raise self.fail(f"{text} is not supported in views")
            return ("this",)
        if kind == "op" and text == "(":
            self.take()
            inner = self.expression()
            self.expect(")")
            return inner
        if kind == "op" and text == "{":
            self.take()
            self.expect("}")
            return ("lit", "empty", None)
        if kind == "ident" and text in ("true", "false") and self.toks[self.pos + 1] != ("op", "("):
            self.take()
            return ("lit", "bool", text == "true")
        if kind in ("ident", "quoted"):
            return self.invocation(None)
        raise self.fail(f"unexpected {text or 'end of expression'!r}")

    def postfix(self, node: Node) -> Node:
        while True:
            kind, text = self.peek()
            if kind == "op" and text == ".":
                self.take()
                node = self.invocation(node)
            elif kind == "op" and text == "[":
                self.take()
                index = self.expression()
                self.expect("]")
                node = ("index", node, index)
            else:
                return node


def parse(text: object, field: str = "path") -> Node:
    """Parse one FHIRPath expression.

    Args:
        text: the expression.
        field: where it sits in the view, for error messages (``select[0].column[1].path``).

    Returns:
        The syntax tree (see the module docstring).

    Raises:
        InvalidInputError: the text is not a string or not a FHIRPath expression.

    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(field, "must be a FHIRPath expression (a non-empty string)", value=text)
    parser = _Parser(text, field)
    node = parser.expression()
    if parser.peek()[0] != "end":
        raise parser.fail(f"unexpected {parser.peek()[1]!r}")
    return node
