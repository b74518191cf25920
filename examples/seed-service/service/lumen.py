"""Lumen: a reference service for §2 of the seed privacy policy, built on troth.

Lumen sells metered access (bandwidth and time per plan), watches for threats and abuse,
and e-mails customers and prospects. It keeps no personal data of its own. Every value
lives in troth's vault, and every read or write names the purpose it serves, so the
policy in ``examples/seed-service/policy.yaml`` is enforced where the data is used.
Consent is recorded and read through troth's consent API.

Every vault call names its purpose *and* the seed activity it carries out, so troth applies
that activity's legal basis: consent must be given for a consent-based activity, an
objection stops a legitimate-interest activity, and a restriction stops everything but a
legal obligation. The methods and their activities:

* ``provide_service``: ``sign_up`` (the account), ``start_session`` (the plan),
  ``record_usage``, ``bill`` (metered_plan, contract); ``check_threat`` and the device
  that ``start_session`` records (threat_protection, contract).
* ``prevent_harm``: ``flag_abuse`` (fraud_and_abuse, legitimate interest).
* ``communicate``: ``send_service_notice`` and the address ``sign_up`` stores
  (service_communications, contract); ``send_product_news`` (product_news_customers,
  legitimate interest); ``add_prospect``, ``send_marketing`` (marketing_prospects, consent
  ``email_marketing``: record the prospect's consent before adding the address).
* ``develop_services``: ``record_feedback`` (feedback_planning, legitimate interest).
* ``analytics``: ``analyse_usage`` (usage_analytics, consent ``analytics``).
* ``legal_compliance``: ``keep_records`` (record_keeping, legal obligation).

A call that names no activity still works where every activity of the purpose that covers
the categories rests on the same basis. Where they differ (``communicate`` with
``account`` or ``contact``, for example) troth refuses it as ``ambiguous``, because picking
a basis for the caller would pick the most convenient one.

What troth does not check
-------------------------
* troth checks that the named activity belongs to the purpose and declares the
  categories, not that it is the one the service really carries out. Naming the right one
  is Lumen's job.
* The vault ignores an activity's ``subjects`` (customer or prospect). Nothing stops a
  service from reading a prospect's address as ``service_communications``, which needs
  no consent.
* The vault keeps one value per subject and category, not per purpose or activity. The
  ``usage`` note that ``flag_abuse`` writes is the value ``analyse_usage`` reads, and the
  ``contact`` stored for service notices is the one product news uses.
* There is no atomic increment: ``record_usage`` reads the totals and writes them back,
  so two concurrent calls for one account can lose an update.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Self, TypedDict

import httpx

__all__ = ["PLANS", "Denied", "Email", "Lumen", "Plan", "TrothClient"]

RULES = frozenset({"policy", "consent", "restriction", "objection", "ambiguous"})
BLOCKED = ipaddress.ip_network("203.0.113.0/24")  # addresses known to attack us (example)
ABUSE_GB_PER_HOUR = 500.0


class Denied(Exception):
    """troth refused a purpose: ``rule`` is policy, consent, restriction, objection or
    ambiguous (the call must name its activity)."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"{rule}: {reason}")
        self.rule = rule
        self.reason = reason


class TrothClient:
    """troth's vault and consent APIs over HTTP, with an API key of role ``service``."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    @classmethod
    def from_env(cls) -> Self:
        return cls(os.environ["TROTH_URL"], os.environ["TROTH_API_KEY"])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        response = self.http.post(path, json=body)
        if response.status_code == 403:
            rule, _, reason = str(response.json().get("detail", "")).partition(": ")
            if rule in RULES:
                raise Denied(rule, reason)
        response.raise_for_status()
        return response

    def put(
        self,
        subject: str,
        category: str,
        value: str,
        *,
        purpose: str,
        activity: str | None = None,
    ) -> None:
        body = {"subject": subject, "category": category, "value": value, "purpose": purpose}
        if activity is not None:
            body["activity"] = activity
        self._post("/api/vault/put", body)

    def get(
        self,
        subject: str,
        categories: list[str],
        *,
        purpose: str,
        activity: str | None = None,
    ) -> dict[str, str | None]:
        body: dict[str, Any] = {"subject": subject, "categories": categories, "purpose": purpose}
        if activity is not None:
            body["activity"] = activity
        values: dict[str, str | None] = self._post("/api/vault/get", body).json()["values"]
        return values

    def limit(
        self,
        subject: str,
        kind: Literal["restriction", "objection", "legal_hold"],
        scope: str,
        reason: str,
    ) -> None:
        body = {"subject": subject, "kind": kind, "scope": scope, "reason": reason}
        self._post("/api/vault/limits", body)

    def consent(self, subject: str, choices: dict[str, Literal["given", "refused"]]) -> Any:
        """Record a choice; returns the signed receipt."""
        body = {"subject": subject, "choices": choices, "method": "api"}
        return self._post("/api/consent", body).json()["receipt"]

    def consents(self, subject: str) -> set[str]:
        """The consent categories ``subject`` allows now."""
        response = self.http.get(f"/api/consent/{subject}")
        response.raise_for_status()
        states = response.json()["categories"]
        return {c for c, state in states.items() if state["allowed"]}


@dataclass(frozen=True)
class Plan:
    per_gigabyte: Decimal
    per_minute: Decimal


PLANS = {
    "basic": Plan(Decimal("0.50"), Decimal("0.01")),
    "pro": Plan(Decimal("0.20"), Decimal("0.00")),
}


@dataclass(frozen=True)
class Email:
    to: str
    subject: str


class Use(TypedDict):
    """The purpose and the seed activity of one vault call."""

    purpose: str
    activity: str


METERING = Use(purpose="provide_service", activity="metered_plan")
THREATS = Use(purpose="provide_service", activity="threat_protection")
ABUSE = Use(purpose="prevent_harm", activity="fraud_and_abuse")
SERVICE_MAIL = Use(purpose="communicate", activity="service_communications")
PRODUCT_NEWS = Use(purpose="communicate", activity="product_news_customers")
MARKETING = Use(purpose="communicate", activity="marketing_prospects")
FEEDBACK = Use(purpose="develop_services", activity="feedback_planning")
ANALYTICS = Use(purpose="analytics", activity="usage_analytics")
RECORDS = Use(purpose="legal_compliance", activity="record_keeping")


@dataclass
class Lumen:
    """The service. ``outbox`` stands in for the mail server."""

    troth: TrothClient
    outbox: list[Email] = field(default_factory=list)

    # --- provide_service: the metered plan and threat protection (contract) ---------------

    def sign_up(self, account: str, plan: str, email: str) -> None:
        """metered_plan for the account and usage; service_communications for the address."""
        self.troth.put(account, "account", json.dumps({"plan": plan}), **METERING)
        self.troth.put(account, "contact", email, **SERVICE_MAIL)
        for category in ("bandwidth_usage", "service_time"):
            self.troth.put(account, category, "0", **METERING)

    def start_session(self, account: str, device: str) -> str:
        """Open a session on ``device``; returns the account's plan (metered_plan). The
        device is a threat signal (threat_protection): metered_plan does not use it."""
        values = self.troth.get(account, ["account"], **METERING)
        self.troth.put(account, "device", device, **THREATS)
        return str(json.loads(values["account"] or "{}")["plan"])

    def record_usage(self, account: str, gigabytes: float, minutes: int) -> None:
        """metered_plan. Not atomic: see the module docstring."""
        used = self.troth.get(account, ["bandwidth_usage", "service_time"], **METERING)
        total_gb = Decimal(used["bandwidth_usage"] or "0") + Decimal(str(gigabytes))
        total_min = int(used["service_time"] or "0") + minutes
        self.troth.put(account, "bandwidth_usage", str(total_gb), **METERING)
        self.troth.put(account, "service_time", str(total_min), **METERING)

    def bill(self, account: str) -> Decimal:
        """Charge the period's usage at the plan's prices and start a new period
        (metered_plan)."""
        got = self.troth.get(account, ["account", "bandwidth_usage", "service_time"], **METERING)
        plan = PLANS[json.loads(got["account"] or "{}")["plan"]]
        amount = (
            Decimal(got["bandwidth_usage"] or "0") * plan.per_gigabyte
            + int(got["service_time"] or "0") * plan.per_minute
        ).quantize(Decimal("0.01"))
        self.troth.put(account, "billing", json.dumps({"amount": str(amount)}), **METERING)
        for category in ("bandwidth_usage", "service_time"):
            self.troth.put(account, category, "0", **METERING)
        return amount

    def check_threat(self, account: str, device: str, ip: str) -> bool:
        """Record where a connection comes from; True (and a threat event) if it is blocked
        (threat_protection)."""
        self.troth.put(account, "device", device, **THREATS)
        self.troth.put(account, "ip_address", ip, **THREATS)
        if ipaddress.ip_address(ip) not in BLOCKED:
            return False
        seen = self.troth.get(account, ["threat_events"], **THREATS)
        events = [*json.loads(seen["threat_events"] or "[]"), f"blocked {ip}"]
        self.troth.put(account, "threat_events", json.dumps(events), **THREATS)
        return True

    # --- prevent_harm: fraud and abuse (legitimate interest) ------------------------------

    def flag_abuse(self, account: str, usage: float) -> bool:
        """Flag ``usage`` gigabytes an hour as abuse above the fair-use limit
        (fraud_and_abuse: an objection to prevent_harm or a restriction stops it)."""
        flagged = usage > ABUSE_GB_PER_HOUR
        note = json.dumps({"gigabytes_per_hour": usage, "flagged": flagged})
        self.troth.put(account, "usage", note, **ABUSE)
        return flagged

    # --- communicate -----------------------------------------------------------------------

    def _mail(self, who: str, text: str, categories: list[str], via: Use) -> Email:
        values = self.troth.get(who, categories, **via)
        email = Email(str(values["contact"]), text)
        self.outbox.append(email)
        return email

    def send_service_notice(self, account: str) -> Email:
        """service_communications (contract)."""
        return self._mail(account, "Changes to your plan", ["account", "contact"], SERVICE_MAIL)

    def send_product_news(self, account: str) -> Email:
        """product_news_customers (legitimate interest): an objection to communicate stops
        it."""
        return self._mail(account, "New in Lumen", ["account", "contact"], PRODUCT_NEWS)

    def add_prospect(self, prospect: str, email: str) -> None:
        """marketing_prospects: troth refuses the address until the prospect consents to
        email_marketing."""
        self.troth.put(prospect, "contact", email, **MARKETING)

    def send_marketing(self, prospect: str) -> Email:
        """marketing_prospects (consent email_marketing, checked by troth)."""
        return self._mail(prospect, "Try Lumen", ["contact"], MARKETING)

    # --- develop_services, analytics, legal_compliance ------------------------------------

    def record_feedback(self, account: str, text: str) -> None:
        """feedback_planning (legitimate interest): an objection stops it."""
        self.troth.put(account, "feedback", text, **FEEDBACK)

    def analyse_usage(self, account: str) -> dict[str, str | None]:
        """usage_analytics: needs the account's consent 'analytics'."""
        return self.troth.get(account, ["usage", "device"], **ANALYTICS)

    def keep_records(self, account: str) -> dict[str, str | None]:
        """record_keeping (legal obligation): survives a restriction."""
        return self.troth.get(account, ["account", "billing"], **RECORDS)
