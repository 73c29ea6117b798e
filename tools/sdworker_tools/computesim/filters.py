"""The ``filter`` query parameter of compute ``list`` calls, parsed and evaluated.

Two dialects reach the API and both are accepted, mixed freely:

* the current one the client libraries document: ``labels.sdworker-node = "n1" AND name != "x"``,
  with ``= != < > <= >= :``, ``AND``/``OR``/``NOT``, parentheses, ``*`` wildcards in quoted strings
  and ``labels.KEY:*`` for "has the key";
* the legacy one gcloud still sends after rewriting ``--filter``: ``(name eq ".*\\bdisk\\b.*")
  (labels.a ne "b")``, where ``eq``/``ne`` take an RE2 pattern that must match the whole value and
  adjacent parenthesised terms are AND-ed.

The parser is pure (no I/O) so the unit tests can table-test it; ``parse`` raises ``FilterError``,
which the server turns into the API's 400 ``invalid``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class FilterError(ValueError):
    """The filter expression cannot be parsed."""


class Expr(Protocol):
    def matches(self, resource: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True)
class MatchAll:
    def matches(self, resource: Mapping[str, Any]) -> bool:
        return True


@dataclass(frozen=True)
class And:
    terms: tuple[Expr, ...]

    def matches(self, resource: Mapping[str, Any]) -> bool:
        return all(t.matches(resource) for t in self.terms)


@dataclass(frozen=True)
class Or:
    terms: tuple[Expr, ...]

    def matches(self, resource: Mapping[str, Any]) -> bool:
        return any(t.matches(resource) for t in self.terms)


@dataclass(frozen=True)
class Not:
    term: Expr

    def matches(self, resource: Mapping[str, Any]) -> bool:
        return not self.term.matches(resource)


def _field_values(resource: Any, path: list[str]) -> Iterator[Any]:
    """Every value at ``path``; lists fan out, so ``disks.deviceName`` looks at each attached disk."""
    if isinstance(resource, list):
        for item in resource:
            yield from _field_values(item, path)
        return
    if not path:
        yield resource
        return
    if isinstance(resource, Mapping) and path[0] in resource:
        yield from _field_values(resource[path[0]], path[1:])


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: str
    quoted: bool

    def matches(self, resource: Mapping[str, Any]) -> bool:
        values = list(_field_values(resource, self.field.split(".")))
        if self.op == ":" and self.value == "*" and not self.quoted:
            return bool(values)
        if self.op in ("!=", "ne"):
            # "not equal" holds for a missing field, as in the API (the positive form would be false).
            positive = Comparison(self.field, "=" if self.op == "!=" else "eq", self.value, self.quoted)
            return not positive.matches(resource)
        return any(self._compare(v) for v in values)

    def _compare(self, actual: Any) -> bool:
        if isinstance(actual, (Mapping, list)):
            return False
        if self.op == "eq":
            try:
                return re.fullmatch(self.value, _as_text(actual)) is not None
            except re.error as exc:
                raise FilterError(f"bad regular expression {self.value!r}: {exc}") from exc
        if self.op in ("=", ":"):
            if "*" in self.value:
                pattern = ".*".join(re.escape(part) for part in self.value.split("*"))
                return re.fullmatch(pattern, _as_text(actual)) is not None
            left, right = _as_number(actual), _as_number(self.value)
            if left is not None and right is not None:
                return left == right
            return _as_text(actual) == self.value
        left, right = _as_number(actual), _as_number(self.value)
        a: Any = left if left is not None and right is not None else _as_text(actual)
        b: Any = right if left is not None and right is not None else self.value
        return bool({"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[self.op])


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_SYMBOL_OPS = (">=", "<=", "!=", "=", ">", "<", ":")
_WORD_OPS = ("eq", "ne")
_KEYWORDS = ("AND", "OR", "NOT")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> FilterError:
        return FilterError(f"{why} at position {self.pos} in {self.text!r}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_end(self) -> bool:
        self.skip_ws()
        return self.pos >= len(self.text)

    def peek_keyword(self, word: str) -> bool:
        self.skip_ws()
        end = self.pos + len(word)
        if self.text[self.pos : end] != word:
            return False
        return end >= len(self.text) or self.text[end].isspace() or self.text[end] == "("

    def parse(self) -> Expr:
        if self.at_end():
            return MatchAll()
        expr = self.parse_or()
        if not self.at_end():
            raise self.fail("unexpected text")
        return expr

    def parse_or(self) -> Expr:
        terms = [self.parse_and()]
        while self.peek_keyword("OR"):
            self.pos += 2
            terms.append(self.parse_and())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def parse_and(self) -> Expr:
        terms = [self.parse_unary()]
        while True:
            if self.at_end() or self.text[self.pos] == ")" or self.peek_keyword("OR"):
                break
            if self.peek_keyword("AND"):
                self.pos += 3
            terms.append(self.parse_unary())  # juxtaposition is AND, as in "(a eq x)(b eq y)"
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def parse_unary(self) -> Expr:
        if self.peek_keyword("NOT"):
            self.pos += 3
            return Not(self.parse_unary())
        self.skip_ws()
        if self.text.startswith("-", self.pos):
            self.pos += 1
            return Not(self.parse_primary())
        return self.parse_primary()

    def parse_primary(self) -> Expr:
        self.skip_ws()
        if self.text.startswith("(", self.pos):
            self.pos += 1
            expr = self.parse_or()
            self.skip_ws()
            if not self.text.startswith(")", self.pos):
                raise self.fail("missing ')'")
            self.pos += 1
            return expr
        return self.parse_comparison()

    def parse_comparison(self) -> Comparison:
        self.skip_ws()
        match = _FIELD.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a field name")
        field_name = match.group(0)
        self.pos = match.end()
        self.skip_ws()
        op = self.parse_operator()
        self.skip_ws()
        value, quoted = self.parse_value()
        return Comparison(field_name, op, value, quoted)

    def parse_operator(self) -> str:
        for op in _SYMBOL_OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        for word in _WORD_OPS:
            end = self.pos + len(word)
            if self.text[self.pos : end] == word and end < len(self.text) and self.text[end].isspace():
                self.pos = end
                return word
        raise self.fail("expected a comparison operator")

    def parse_value(self) -> tuple[str, bool]:
        if self.pos >= len(self.text):
            raise self.fail("expected a value")
        quote = self.text[self.pos]
        if quote in "\"'":
            out: list[str] = []
            self.pos += 1
            while self.pos < len(self.text):
                ch = self.text[self.pos]
                if ch == "\\" and self.pos + 1 < len(self.text):
                    nxt = self.text[self.pos + 1]
                    # Keep regex escapes (\b, \d, \.) intact for eq/ne; only an escaped quote is unescaped.
                    out.append(nxt if nxt == quote else ch + nxt)
                    self.pos += 2
                    continue
                if ch == quote:
                    self.pos += 1
                    return "".join(out), True
                out.append(ch)
                self.pos += 1
            raise self.fail("unterminated string")
        start = self.pos
        depth = 0
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch.isspace():
                break
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    break
                depth -= 1
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected a value")
        return self.text[start : self.pos], False


def parse(text: str | None) -> Expr:
    """Parse a list filter; an empty or missing filter matches everything."""
    return _Parser(text or "").parse()
