"""Requests from authorities: logged with decision, categories and legal basis; their legal
holds block erasure for the named subjects until released with a reason."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from transfers.transfers_world import World, someone
from troth.errors import PurposeDenied, RequestError, VocabularyError
from troth.store.tables_transfers import legal_request_subjects, legal_requests


def add(world: World, subjects: list[str], **change: object):
    request = {
        "authority": "Staatsanwaltschaft Berlin",
        "country": "DE",
        "reference": "231 Js 1234/27",
        "received": dt.date(2027, 2, 20),
        "decision": "disclosed",
        "legal_basis": "§ 100j StPO; GDPR Art. 6(1)(c)",
        "categories": ["account", "ip_address"],
        "subjects": subjects,
        "actor": "user:7",
        "recipient": "authorities",
        "purpose": "legal_compliance",
        **change,
    }
    return world.legal.add(**request)  # type: ignore[arg-type]


def test_a_request_is_logged_with_its_decision_and_disclosures(world):
    a, b = someone(), someone()
    req = add(world, [a, b])
    assert (req.decision, req.categories, req.subjects) == (
        "disclosed",
        ["account", "ip_address"],
        2,
    )
    assert req.legal_basis.startswith("§ 100j StPO")
    found = world.disclosures.recent()
    assert {(d.recipient, d.source, d.legal_request_id) for d in found} == {
        ("authorities", "legal", req.id)
    }
    assert len(found) == 2
    assert world.legal.names(req.id, a)
    assert not world.legal.names(req.id, someone())


def test_subjects_are_never_stored_or_audited_in_clear(world):
    subject = someone()
    req = add(world, [subject])
    world.legal.hold(req.id, scope="*", reason="preserve for proceedings", actor="user:7")
    with world.engine.connect() as conn:
        stored = json.dumps(
            [dict(r._mapping) for t in (legal_requests, legal_request_subjects)
             for r in conn.execute(select(t))],
            default=str,
        )  # fmt: skip
    assert subject not in stored
    assert subject not in json.dumps(world.audit_rows(), default=str)


def test_a_hold_blocks_erasure_until_released_with_a_reason(world):
    held, other = someone(), someone()
    for s in (held, other):
        world.vault.put(s, "account", "alex@example.org", purpose="provide_service")
    req = add(world, [held])
    [hold] = world.legal.hold(req.id, scope="*", reason="preserve for trial", actor="user:7")
    assert hold.active
    assert [scope for scope, _ in world.vault.holds(held)] == ["*"]
    with pytest.raises(PurposeDenied) as blocked:
        world.vault.erase(held, actor="dpo")
    assert blocked.value.rule == "legal_hold"
    assert world.vault.get(held, ["account"], purpose="provide_service") == {
        "account": "alex@example.org"
    }
    assert world.vault.erase(other, actor="dpo")["values"] == 1  # not named: not held

    released = world.legal.release(hold.id, reason="proceedings closed", actor="user:8")
    assert (released.active, released.release_reason, released.released_by) == (
        False,
        "proceedings closed",
        "user:8",
    )
    assert world.vault.holds(held) == []
    assert world.vault.erase(held, actor="dpo")["values"] == 1
    actions = [r["action"] for r in world.audit_rows()]
    assert "limit.legal_hold" in actions
    assert "limit.legal_hold.released" in actions
    assert "erasure.blocked" in actions


def test_a_hold_on_one_category(world):
    subject = someone()
    req = add(world, [subject])
    world.legal.hold(req.id, scope="ip_address", reason="traffic data", actor="user:7")
    assert [scope for scope, _ in world.vault.holds(subject)] == ["ip_address"]


def test_releasing_one_request_keeps_another_requests_hold(world):
    subject = someone()
    first, second = add(world, [subject]), add(world, [subject], reference="2 BvR 1/27")
    world.legal.hold(first.id, scope="*", reason="a", actor="u")
    world.legal.hold(second.id, scope="*", reason="b", actor="u")
    world.legal.release_request(first.id, reason="closed", actor="u")
    assert len(world.vault.holds(subject)) == 1
    loaded = world.legal.get(second.id)
    assert loaded is not None
    assert [h.active for h in loaded.holds] == [True]


@pytest.mark.parametrize(
    ("call", "rule"),
    [
        (lambda w, r: w.legal.hold(r, scope="shoe_size", reason="x", actor="u"),
         "scope_undeclared"),
        (lambda w, r: w.legal.hold(r, scope="*", reason="x", actor="u", subjects=[someone()]),
         "subject_not_in_request"),
        (lambda w, r: w.legal.hold(r + 99, scope="*", reason="x", actor="u"), "unknown_request"),
        (lambda w, r: w.legal.release(12345, reason="x", actor="u"), "unknown_hold"),
        (lambda w, r: w.legal.release_request(r, reason="x", actor="u"), "no_active_hold"),
    ],
)  # fmt: skip
def test_misuse_is_refused_and_changes_nothing(world, call, rule):
    req = add(world, [someone()])
    before = len(world.audit_rows())
    with pytest.raises(PurposeDenied) as denied:
        call(world, req.id)
    assert denied.value.rule == rule
    assert len(world.audit_rows()) == before


def test_a_release_twice_is_refused(world):
    req = add(world, [someone()])
    [hold] = world.legal.hold(req.id, scope="*", reason="x", actor="u")
    world.legal.release(hold.id, reason="done", actor="u")
    with pytest.raises(PurposeDenied) as denied:
        world.legal.release(hold.id, reason="again", actor="u")
    assert denied.value.rule == "already_released"


def test_bad_request_content_is_refused_before_anything_is_stored(world):
    with pytest.raises(PurposeDenied) as denied:
        add(world, [someone()], categories=["shoe_size"])
    assert denied.value.rule == "category_undeclared"
    with pytest.raises(VocabularyError):
        add(world, [someone()], country="Germany-ish")
    with pytest.raises(PurposeDenied) as denied:  # advertising is not why authorities receive data
        add(world, [someone()], purpose="advertising")
    assert denied.value.rule == "purpose_undeclared"
    assert world.legal.recent() == []
    assert world.disclosures.recent() == []


def test_a_refused_request_discloses_nothing(world):
    req = add(world, [someone()], decision="refused", categories=[], recipient=None, purpose=None)
    assert req.decision == "refused"
    assert world.disclosures.recent() == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("authority", "A" * 201), ("reference", "R" * 201), ("legal_basis", "§" * 501),
     ("note", "n" * 2001), ("authority", "  ")],
)  # fmt: skip
def test_text_that_does_not_fit_is_refused_naming_the_field(world, field, value):
    with pytest.raises(RequestError) as refused:
        add(world, [someone()], **{field: value})
    assert refused.value.status == 422
    assert str(refused.value).startswith(f"{field}: ")
    assert value not in str(refused.value)
    assert world.legal.recent() == []
    assert world.audit_rows() == []


@pytest.mark.parametrize("decision", ["disclosed", "partial"])
@pytest.mark.parametrize("missing", ["recipient", "purpose", "categories"])
def test_a_disclosing_decision_names_recipient_purpose_and_categories(world, decision, missing):
    empty: object = [] if missing == "categories" else None
    with pytest.raises(RequestError) as refused:
        add(world, [someone()], decision=decision, **{missing: empty})
    assert str(refused.value).startswith(f"{missing}: ")
    assert world.legal.recent() == []
    assert world.disclosures.recent() == []


def test_a_partial_decision_records_its_disclosure_to_the_authoritys_country(world):
    req = add(world, [someone()], decision="partial", categories=["account"])
    [d] = world.disclosures.recent()
    assert (d.legal_request_id, d.recipient, d.country, d.categories) == (
        req.id, "authorities", "DE", ["account"],
    )  # fmt: skip


@pytest.mark.parametrize("decision", ["pending", "refused"])
@pytest.mark.parametrize(
    ("field", "value"),
    [("categories", ["account"]), ("recipient", "authorities"), ("purpose", "legal_compliance")],
)
def test_a_request_that_disclosed_nothing_names_no_categories_or_recipient(
    world, decision, field, value
):
    change = {"categories": [], "recipient": None, "purpose": None, field: value}
    with pytest.raises(RequestError) as refused:
        add(world, [someone()], decision=decision, **change)
    assert str(refused.value).startswith(f"{field}: ")
    assert world.legal.recent() == []


def test_ids_beyond_the_stored_range_are_unknown_not_a_crash(world):
    add(world, [someone()])
    huge = 2**63
    with pytest.raises(PurposeDenied) as denied:
        world.legal.hold(huge, scope="*", reason="x", actor="u")
    assert denied.value.rule == "unknown_request"
    with pytest.raises(PurposeDenied) as denied:
        world.legal.release(huge, reason="x", actor="u")
    assert denied.value.rule == "unknown_hold"
    with pytest.raises(PurposeDenied) as denied:
        world.legal.release_request(2**31, reason="x", actor="u")
    assert denied.value.rule == "no_active_hold"
    assert world.legal.get(huge) is None
    assert not world.legal.names(huge, someone())


def test_repeating_a_hold_returns_the_active_one(world):
    subject, other = someone(), someone()
    req = add(world, [subject])
    [first] = world.legal.hold(req.id, scope="*", reason="keep", actor="u")
    [again] = world.legal.hold(req.id, scope="*", reason="keep", actor="u")
    assert again.id == first.id
    assert len(world.vault.holds(subject)) == 1
    loaded = world.legal.get(req.id)
    assert loaded is not None
    assert [h.id for h in loaded.holds] == [first.id]
    [narrower] = world.legal.hold(req.id, scope="account", reason="keep", actor="u")
    assert narrower.id != first.id  # another scope is another hold
    world.legal.release(first.id, reason="done", actor="u")
    [renewed] = world.legal.hold(req.id, scope="*", reason="again", actor="u")
    assert renewed.id not in (first.id, narrower.id)  # a released hold is not reused
    both = add(world, [subject, other], reference="2 BvR 2/27")
    world.legal.hold(both.id, scope="*", reason="x", actor="u", subjects=[subject])
    held = world.legal.hold(both.id, scope="*", reason="x", actor="u")
    assert len(held) == 2
    assert len(world.vault.holds(other)) == 1


def test_a_bad_hold_scope_is_reported_on_scope(world):
    req = add(world, [someone()])
    with pytest.raises(PurposeDenied) as denied:
        world.legal.hold(req.id, scope="shoe_size", reason="x", actor="u")
    assert str(denied.value).startswith("scope: shoe_size")
