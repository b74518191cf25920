"""Checks that need the rendered document: every ``[[reference]]`` in a policy text resolves."""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from troth.policy.lint import Finding
from troth.policy.loader import LoadedPolicy
from troth.render.document import REF_PATTERN, build_document
from troth.render.i18n import available_locales, translator

__all__ = ["reference_findings"]

Loc = tuple[str | int, ...]


def reference_findings(loaded: LoadedPolicy) -> list[Finding]:
    policy = loaded.policy
    locale = policy.default_language
    if locale not in available_locales():
        return []
    doc = build_document(policy, translator(locale, locale), strict=False)
    out = []
    for loc, ref in _refs(policy, ()):
        if ref not in doc.targets:
            out.append(
                Finding(
                    "error",
                    "T060",
                    loc,
                    f"[[{ref}]] refers to nothing; known: sections such as 'tracking', "
                    "'rights', and entities such as 'purpose.<id>', 'recipient.<id>'",
                    loaded.source.location(loc),
                )
            )
    return out


def _refs(model: BaseModel, loc: Loc) -> Iterator[tuple[Loc, str]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        yield from _value_refs(value, (*loc, name))


def _value_refs(value: object, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, str):
        for m in REF_PATTERN.finditer(value):
            yield loc, m.group(1)
    elif isinstance(value, dict):
        for key, text in value.items():
            yield from _value_refs(text, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _value_refs(item, (*loc, i))
    elif isinstance(value, BaseModel):
        yield from _refs(value, loc)
