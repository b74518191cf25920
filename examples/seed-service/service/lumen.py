"""Lumen: a reference service for §2 of the seed privacy policy, built on troth.

Lumen sells metered access (bandwidth and time per plan), watches for threats and abuse,
and e-mails customers and prospects. It keeps no personal data of its own. Every value
lives in troth's vault, and every read or write names the purpose it serves, so the
policy in ``examples/seed-service/policy.yaml`` is enforced where the data is used.
Consent is recorded and read through troth's consent API.

Each method names its purpose; the seed activity it carries out (and its basis) is:

* ``provide_service``: ``sign_up``, ``start_session``, ``record_usage``, ``bill``
  (metered_plan, contract); ``check_threat`` (threat_protection, contract).
* ``prevent_harm``: ``flag_abuse`` (fraud_and_abuse, legitimate interest).
* ``communicate``: ``send_service_notice`` (service_communications, contract);
  ``send_product_news`` (product_news_customers, legitimate interest); ``add_prospect``,
  ``send_marketing`` (marketing_prospects, consent ``email_marketing``).
* ``develop_services``: ``record_feedback`` (feedback_planning, legitimate interest).
* ``analytics``: ``analyse_usage`` (usage_analytics, consent ``analytics``).
* ``legal_compliance``: ``keep_records`` (record_keeping, legal obligation).

What troth cannot tell apart
----------------------------
The vault decides on *purpose + categories*. For each category it picks the first
activity of that purpose that needs no consent. A service cannot say which activity it is
carrying out. In the seed, this hides three activities behind others:

* ``marketing_prospects`` (consent): ``contact`` for ``communicate`` is also covered by
  ``service_communications`` (contract), so the vault releases a prospect's address
  without consent. ``send_marketing`` therefore checks ``email_marketing`` through the
  consent API itself before it reads the address. That guard is Lumen's code, not troth's.
* ``product_news_customers`` (legitimate interest): ``account`` and ``contact`` are also
  covered by ``service_communications``, so an objection to ``communicate`` does not stop
  product news. A service cannot read limits, so Lumen cannot honour the objection either.
* ``fraud_and_abuse`` (legitimate interest): ``security_obligations`` (legal obligation)
  is declared first and covers all of its categories. So neither an objection to
  ``prevent_harm`` nor a restriction stops ``flag_abuse``, and the audit log records the
  processing as ``security_obligations``.

The vault also ignores an activity's ``subjects`` (customer or prospect), and records
``keep_records`` as ``comply_with_law`` (declared first; the same basis, so harmless).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Self

import httpx

__all__ = ["PLANS", "Denied", "Email", "Lumen", "Plan", "TrothClient"]

RULES = frozenset({"policy", "consent", "restriction", "objection"})
BLOCKED = ipaddress.ip_network("203.0.113.0/24")  # addresses known to attack us (example)
ABUSE_GB_PER_HOUR = 500.0


class Denied(Exception):
    """troth refused a purpose: ``rule`` is policy, consent, restriction or objection."""

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

    def put(self, subject: str, category: str, value: str, *, purpose: str) -> None:
        body = {"subject": subject, "category": category, "value": value, "purpose": purpose}
        self._post("/api/vault/put", body)

    def get(self, subject: str, categories: list[str], *, purpose: str) -> dict[str, str | None]:
        body = {"subject": subject, "categories": categories, "purpose": purpose}
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


@dataclass
class Lumen:
    """The service. ``outbox`` stands in for the mail server."""

    troth: TrothClient
    outbox: list[Email] = field(default_factory=list)

    # --- provide_service: the metered plan and threat protection (contract) ---------------

    def sign_up(self, account: str, plan: str, email: str) -> None:
        self.troth.put(account, "account", json.dumps({"plan": plan}), purpose="provide_service")
        self.troth.put(account, "contact", email, purpose="communicate")
        for category in ("bandwidth_usage", "service_time"):
            self.troth.put(account, category, "0", purpose="provide_service")

    def start_session(self, account: str, device: str) -> str:
        """Open a session on ``device``; returns the account's plan."""
        values = self.troth.get(account, ["account"], purpose="provide_service")
        self.troth.put(account, "device", device, purpose="provide_service")
        return str(json.loads(values["account"] or "{}")["plan"])

    def record_usage(self, account: str, gigabytes: float, minutes: int) -> None:
        used = self.troth.get(
            account, ["bandwidth_usage", "service_time"], purpose="provide_service"
        )
        total_gb = Decimal(used["bandwidth_usage"] or "0") + Decimal(str(gigabytes))
        total_min = int(used["service_time"] or "0") + minutes
        self.troth.put(account, "bandwidth_usage", str(total_gb), purpose="provide_service")
        self.troth.put(account, "service_time", str(total_min), purpose="provide_service")

    def bill(self, account: str) -> Decimal:
        """Charge the period's usage at the plan's prices and start a new period."""
        purpose = "provide_service"
        got = self.troth.get(
            account, ["account", "bandwidth_usage", "service_time"], purpose=purpose
        )
        plan = PLANS[json.loads(got["account"] or "{}")["plan"]]
        amount = (
            Decimal(got["bandwidth_usage"] or "0") * plan.per_gigabyte
            + int(got["service_time"] or "0") * plan.per_minute
        ).quantize(Decimal("0.01"))
        self.troth.put(account, "billing", json.dumps({"amount": str(amount)}), purpose=purpose)
        for category in ("bandwidth_usage", "service_time"):
            self.troth.put(account, category, "0", purpose=purpose)
        return amount

    def check_threat(self, account: str, device: str, ip: str) -> bool:
        """Record where a connection comes from; True (and a threat event) if it is blocked."""
        self.troth.put(account, "device", device, purpose="provide_service")
        self.troth.put(account, "ip_address", ip, purpose="provide_service")
        if ipaddress.ip_address(ip) not in BLOCKED:
            return False
        seen = self.troth.get(account, ["threat_events"], purpose="provide_service")
        events = [*json.loads(seen["threat_events"] or "[]"), f"blocked {ip}"]
        self.troth.put(account, "threat_events", json.dumps(events), purpose="provide_service")
        return True

    # --- prevent_harm: fraud and abuse (legitimate interest; see the module docstring) ----

    def flag_abuse(self, account: str, usage: float) -> bool:
        """Flag ``usage`` gigabytes an hour as abuse above the fair-use limit."""
        flagged = usage > ABUSE_GB_PER_HOUR
        note = json.dumps({"gigabytes_per_hour": usage, "flagged": flagged})
        self.troth.put(account, "usage", note, purpose="prevent_harm")
        return flagged

    # --- communicate -----------------------------------------------------------------------

    def _mail(self, who: str, text: str) -> Email:
        values = self.troth.get(who, ["account", "contact"], purpose="communicate")
        email = Email(str(values["contact"]), text)
        self.outbox.append(email)
        return email

    def send_service_notice(self, account: str) -> Email:
        """service_communications (contract)."""
        return self._mail(account, "Changes to your plan")

    def send_product_news(self, account: str) -> Email:
        """product_news_customers (legitimate interest). troth takes these categories as
        service_communications, so an objection to 'communicate' does not stop this."""
        return self._mail(account, "New in Lumen")

    def add_prospect(self, prospect: str, email: str) -> None:
        self.troth.put(prospect, "contact", email, purpose="communicate")

    def send_marketing(self, prospect: str) -> Email:
        """marketing_prospects (consent email_marketing), checked here: see the docstring."""
        if "email_marketing" not in self.troth.consents(prospect):
            raise Denied("consent", "consent not given: email_marketing (checked by Lumen)")
        values = self.troth.get(prospect, ["contact"], purpose="communicate")
        email = Email(str(values["contact"]), "Try Lumen")
        self.outbox.append(email)
        return email

    # --- develop_services, analytics, legal_compliance ------------------------------------

    def record_feedback(self, account: str, text: str) -> None:
        """feedback_planning (legitimate interest): an objection stops it."""
        self.troth.put(account, "feedback", text, purpose="develop_services")

    def analyse_usage(self, account: str) -> dict[str, str | None]:
        """usage_analytics: needs the account's consent 'analytics'."""
        return self.troth.get(account, ["usage", "device"], purpose="analytics")

    def keep_records(self, account: str) -> dict[str, str | None]:
        """record_keeping (legal obligation): survives a restriction."""
        return self.troth.get(account, ["account", "billing"], purpose="legal_compliance")
