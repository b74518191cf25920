"""Load ``policy.yaml`` into a validated :class:`Policy`, or say exactly where it is wrong.

Every problem reads ``path:LINE:COL: message``. The YAML is composed node by node so that
each value keeps its place; aliases and anchors are refused (a policy has no use for them,
and refusing them makes "billion laughs" documents harmless); the size and nesting depth
of a file are bounded before any work proportional to them is done.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from troth.errors import Location, PolicyFileError, Problem
from troth.policy.model import Policy
from troth.policy.references import reference_problems
from troth.policy.types import SUGGESTION_BUDGET, quote

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_POLICY_BYTES",
    "LoadedPolicy",
    "SourceMap",
    "compose_mapping",
    "load_policy",
    "parse_policy",
    "read_limited",
    "validation_problems",
]

MAX_POLICY_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_PROBLEMS = 50
MAX_SUGGESTIONS = 50

Loc = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Where each value and key of a policy file was written."""

    path: str
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def location(self, loc: Loc, *, key: bool = False) -> Location:
        """The place of ``loc``, or of its nearest enclosing value that was written."""
        marks = self.keys if key else self.values
        if key and loc in marks:
            line, col = marks[loc]
            return Location(self.path, line, col)
        best: tuple[int, int] = (1, 1)
        prefix: Loc = ()
        for part in loc:
            prefix = (*prefix, part)
            if prefix in self.values:
                best = self.values[prefix]
            else:
                break
        return Location(self.path, *best)


@dataclass(frozen=True)
class LoadedPolicy:
    policy: Policy
    source: SourceMap


def load_policy(path: str | Path) -> LoadedPolicy:
    """Read, parse and validate a policy file."""
    return parse_policy(read_limited(path), str(path))


def read_limited(path: str | Path) -> bytes:
    """The bytes of a troth YAML file, refused with ``path:1:1: ...`` when it is missing,
    not a regular file, or larger than :data:`MAX_POLICY_BYTES`."""
    name = str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise PolicyFileError.at(name, 1, 1, "no such file") from None
    except OSError as exc:
        raise PolicyFileError.at(name, 1, 1, f"cannot read file: {exc.strerror}") from None
    if not p.is_file():
        raise PolicyFileError.at(name, 1, 1, "not a regular file")
    if size > MAX_POLICY_BYTES:
        raise PolicyFileError.at(
            name,
            1,
            1,
            f"file is {size / 1_048_576:.1f} MiB; a policy file may be at most "
            f"{MAX_POLICY_BYTES // 1_048_576} MiB",
        )
    try:
        with p.open("rb") as fh:
            return fh.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyFileError.at(name, 1, 1, f"cannot read file: {exc.strerror}") from None


def compose_mapping(data: bytes | str, name: str) -> tuple[dict[str, Any], SourceMap]:
    """Any troth YAML file (policy, dataset annotations) as plain values plus where each was
    written, under the same limits and refusals as a policy file."""
    text = _decode(data, name) if isinstance(data, bytes) else data
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyFileError.at(name, 1, 1, "text is larger than the size limit")
    _refuse_line_separators(text, name)
    source = SourceMap(name)
    return _compose(text, source), source


def validation_problems(
    exc: ValidationError, source: SourceMap, root: type[BaseModel]
) -> list[Problem]:
    """pydantic errors of a model validated from a composed file -> one clear problem each,
    at the place it was written (``root`` is the model the file was validated as)."""
    with _suggestions():
        return _validation_problems(exc, source, root)


def parse_policy(data: bytes | str, name: str = "<policy>") -> LoadedPolicy:
    """Parse and validate policy text; ``name`` is used in error locations."""
    text = _decode(data, name) if isinstance(data, bytes) else data
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyFileError.at(name, 1, 1, "policy text is larger than the size limit")
    _refuse_line_separators(text, name)
    source = SourceMap(name)
    raw = _compose(text, source)
    token = SUGGESTION_BUDGET.set(MAX_SUGGESTIONS)
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyFileError(_validation_problems(exc, source, Policy)) from None
    finally:
        SUGGESTION_BUDGET.reset(token)
    problems = [
        Problem(source.location(loc, key=key), message)
        for loc, message, key in reference_problems(policy, limit=MAX_PROBLEMS + 1)
    ]
    if problems:
        raise PolicyFileError(_capped(problems))
    return LoadedPolicy(policy, source)


@contextmanager
def _suggestions() -> Iterator[None]:
    token = SUGGESTION_BUDGET.set(MAX_SUGGESTIONS)
    try:
        yield
    finally:
        SUGGESTION_BUDGET.reset(token)


def _capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    kept = sorted(problems, key=lambda p: (p.location.line, p.location.column))[:MAX_PROBLEMS]
    last = kept[-1]
    return [*kept, Problem(last.location, "... and more problems; fix these first")]


_LINE_SEPARATORS = {
    "\u2028": "U+2028 LINE SEPARATOR",
    "\u2029": "U+2029 PARAGRAPH SEPARATOR",
    "\x85": "U+0085 NEXT LINE",
}


def _refuse_line_separators(text: str, name: str) -> None:
    """YAML counts these as line breaks and editors do not: every later line number would
    be wrong, so they are refused where they are."""
    for char, label in _LINE_SEPARATORS.items():
        offset = text.find(char)
        if offset >= 0:
            line = text.count("\n", 0, offset) + 1
            col = offset - (text.rfind("\n", 0, offset) + 1) + 1
            raise PolicyFileError.at(
                name, line, col, f"{label} character; use an ordinary line break or a space"
            )


def _decode(data: bytes, name: str) -> str:
    if b"\x00" in data:
        offset = data.index(b"\x00")
        line, col = _line_col(data, offset)
        raise PolicyFileError.at(name, line, col, "binary content (NUL byte); expected UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        raise PolicyFileError.at(
            name,
            line,
            col,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
        ) from None
    return text.removeprefix("\ufeff")


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, col


_HAVE_LIBYAML = hasattr(yaml, "CParser")
_Parser: Any = getattr(yaml, "CParser", yaml.SafeLoader)


class _PolicyYamlLoader(_Parser, Composer, SafeConstructor, Resolver):  # type: ignore[misc]
    """Events from libyaml (fast, bounded) composed here, so that every node keeps its place;
    aliases, anchors and tags on collections are refused; depth and size are bounded."""

    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node

    def __init__(self, stream: str, name: str) -> None:
        _Parser.__init__(self, stream)
        if _HAVE_LIBYAML:
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
        self.name = name
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        mark = event.start_mark
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            what = "aliases (*name)" if isinstance(event, AliasEvent) else "anchors (&name)"
            raise self._error(mark, f"YAML {what} are not allowed in a policy file")
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and not isinstance(event, ScalarEvent):
            raise self._error(mark, f"YAML tags such as {quote(tag)} are not allowed here")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self._error(mark, f"more than {MAX_NODES:,} values; a policy is far smaller")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error(mark, f"nested more than {MAX_DEPTH} levels deep")
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1

    def _error(self, mark: Any, message: str) -> PolicyFileError:
        return PolicyFileError.at(self.name, mark.line + 1, mark.column + 1, message)


def _compose(text: str, source: SourceMap) -> dict[str, Any]:
    loader = _PolicyYamlLoader(text, source.path)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyFileError.at(source.path, 1, 1, "file is empty; expected a policy mapping")
        if not isinstance(node, MappingNode):
            mark = node.start_mark
            raise PolicyFileError.at(
                source.path,
                mark.line + 1,
                mark.column + 1,
                f"expected a mapping of policy keys at the top, got {_node_kind(node)}",
            )
        value = _convert(node, (), source, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context or ""
        if context.startswith("while parsing a flow") and exc.context_mark is not None:
            opened = exc.context_mark
            bracket = "[" if "sequence" in context else "{"
            raise PolicyFileError.at(
                source.path,
                opened.line + 1,
                opened.column + 1,
                f"this '{bracket}' is not closed where it should be "
                f"(YAML: {exc.problem} on line {mark.line + 1 if mark else '?'})",
            ) from None
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyFileError.at(source.path, line, col, _yaml_message(exc)) from None
    except yaml.YAMLError as exc:
        raise PolicyFileError.at(source.path, 1, 1, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    assert isinstance(value, dict)
    return value


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "not valid YAML"
    if "'\\t'" in problem:
        return "tab character; YAML indentation must use spaces"
    context = f" {exc.context}" if exc.context else ""
    return f"not valid YAML:{context} {problem}".replace("  ", " ")


def _node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return "a single value"


def _convert(node: Node, loc: Loc, source: SourceMap, loader: _PolicyYamlLoader) -> Any:
    source.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            kmark = key_node.start_mark
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise PolicyFileError.at(
                    source.path, kmark.line + 1, kmark.column + 1, "YAML merge keys are not allowed"
                )
            if not isinstance(key_node, ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                raise PolicyFileError.at(
                    source.path, kmark.line + 1, kmark.column + 1, "keys must be plain words"
                )
            key = key_node.value
            if key in out:
                first = source.keys[(*loc, key)]
                raise PolicyFileError.at(
                    source.path,
                    kmark.line + 1,
                    kmark.column + 1,
                    f"duplicate key {quote(key)} (first given on line {first[0]})",
                )
            source.keys[(*loc, key)] = (kmark.line + 1, kmark.column + 1)
            out[key] = _convert(value_node, (*loc, key), source, loader)
        return out
    if isinstance(node, SequenceNode):
        return [_convert(item, (*loc, i), source, loader) for i, item in enumerate(node.value)]
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, OverflowError) as exc:
        mark = node.start_mark
        reason = "the number is too long" if "digits" in str(exc) else str(exc)
        raise PolicyFileError.at(
            source.path,
            mark.line + 1,
            mark.column + 1,
            f"{quote(node.value)} is not valid: {reason}",
        ) from None


# --- pydantic errors -> one clear line each ----------------------------------------------


def _validation_problems(
    exc: ValidationError, source: SourceMap, root: type[BaseModel]
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[Loc, str]] = set()
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            location = source.location(loc, key=True)
        elif kind == "missing":
            location = source.location(loc[:-1])
        else:
            location = source.location(loc)
        message = _message(err, loc, root)
        if (loc, message) in seen:
            continue
        seen.add((loc, message))
        problems.append(Problem(location, message))
    return problems[:MAX_PROBLEMS]


def _where(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[a-z_]+", part):
            out += f".{part}" if out else part
    return out or "policy"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"'{str(value).lower()}'"
    if value is None:
        return "nothing"
    return quote(value)


def _yaml11_hint(value: Any) -> str:
    """YAML reads unquoted NO, yes, on and 1.0 as booleans and numbers; say so where it bites."""
    if isinstance(value, bool | int | float):
        return " (YAML reads unquoted NO, yes, on, off and numbers as such: put it in quotes)"
    return ""


_PATTERNS = {
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$": "an e-mail address",
    r"^\d+(\.\d+){0,2}$": "a version such as 1, 1.2 or 1.2.0",
}


def _message(err: Any, loc: Loc, root: type[BaseModel]) -> str:
    kind: str = err["type"]
    where = _where(loc)
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _allowed_keys(loc[:-1], root)
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        parent = _where(loc[:-1])
        hint = f" (did you mean '{close[0]}'?)" if close else f"; allowed: {', '.join(allowed)}"
        return f"unknown key {quote(key)} in {parent}{hint}"
    if kind == "missing":
        return f"missing required key '{loc[-1]}' in {_where(loc[:-1])}"
    if kind == "literal_error" and loc == ("troth",):
        return f"troth: schema version {_kind(value)} is not supported; this troth reads version 1"
    if kind == "literal_error":
        expected = re.findall(r"'([^']*)'|(\d+)", str(ctx.get("expected", "")))
        options = [a or b for a, b in expected]
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{where}: {_kind(value)} is not one of {', '.join(options)}{hint}"
    if kind == "value_error":
        return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"
    if kind in ("string_type",):
        return f"{where}: expected text, got {_kind(value)}{_yaml11_hint(value)}"
    if kind == "list_type":
        return f"{where}: expected a list, got {_kind(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{where}: expected a mapping, got {_kind(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{where}: expected a whole number, got {_kind(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{where}: expected true or false, got {_kind(value)}"
    if kind.startswith(("date_", "datetime_")):
        return f"{where}: expected a date such as 2026-12-01, got {_kind(value)}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"{where}: needs at least {n} item{'s' if n != 1 else ''}"
    if kind == "string_pattern_mismatch":
        wanted = _PATTERNS.get(str(ctx.get("pattern")), f"the pattern {ctx.get('pattern')}")
        return f"{where}: {_kind(value)} is not {wanted}"
    return f"{where}: {err['msg']}"


def _allowed_keys(loc: Loc, root: type[BaseModel]) -> list[str]:
    model: type[BaseModel] | None = root
    keyed = False  # the previous field was a mapping of names to models: skip the name
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
        keyed = any(get_origin(t) is dict for t in _walk_types(info.annotation))
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in _walk_types(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _walk_types(annotation: Any) -> Iterator[Any]:
    yield annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            yield from _walk_types(arg)
