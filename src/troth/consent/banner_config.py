"""The banner's configuration for one locale and jurisdiction, derived from the policy.

Computed once per (locale, jurisdiction) when the app starts; the banner script reads it
as ``window.trothConfig``. See ``consent/banner/README.md`` for the contract.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from troth.policy.model import CONSENT_MODE_SIGNALS, Jurisdiction, Policy, TrackingTechnology
from troth.policy.types import Duration
from troth.render.i18n import translator

__all__ = ["CONSENT_COOKIE", "banner_assets", "banner_config"]

CONSENT_COOKIE = "troth_consent"


def _cookie_spec(t: TrackingTechnology) -> dict[str, Any]:
    return {
        "name": t.name or t.pattern,
        "glob": t.name is None,
        "domain": t.domain,
        "path": t.path,
    }


def _consent_cookie_days(policy: Policy) -> int:
    for t in policy.tracking:
        if t.name == CONSENT_COOKIE and isinstance(t.expiry, Duration):
            return max(1, t.expiry.approx_seconds() // 86400)
    return 365


def banner_config(
    policy: Policy,
    locale: str,
    revisions: dict[str, int],
    jurisdiction: Jurisdiction | None,
    api: str = "/api/consent",
) -> dict[str, Any]:
    t = translator(locale, policy.default_language)
    _ = t.gettext
    names = {r.id: t.text(r.name) for r in policy.recipients}
    categories = []
    for c in policy.consent_categories:
        techs = [x for x in policy.tracking if x.category == c.id]
        if not techs and not c.required:
            continue
        vendors = list(
            dict.fromkeys(
                names.get(x.vendor or "", policy.service) if x.party == "third" else policy.service
                for x in techs
            )
        )
        categories.append(
            {
                "id": c.id,
                "name": t.text(c.name),
                "description": t.text(c.description),
                "required": c.required,
                "revision": revisions.get(c.id, 1),
                "cookies": [
                    _cookie_spec(x) for x in techs if x.type in ("cookie", "local_storage")
                ],
                "vendors": vendors,
            }
        )
    mapping = {
        signal: [c.id for c in policy.consent_categories if signal in c.consent_mode]
        for signal in CONSENT_MODE_SIGNALS
    }
    return {
        "api": api,
        "policyVersion": policy.version,
        "lang": locale,
        "cookie": {
            "name": CONSENT_COOKIE,
            "days": _consent_cookie_days(policy),
            "path": "/",
            "domain": None,
        },
        "jurisdiction": {
            "id": jurisdiction.id if jurisdiction else "",
            "model": jurisdiction.consent_model if jurisdiction else "opt_in",
            "gpc": bool(jurisdiction and jurisdiction.gpc == "opt_out"),
            "gpcRefuses": list(jurisdiction.gpc_refuses) if jurisdiction else [],
        },
        "categories": categories,
        "consentMode": {k: v for k, v in mapping.items() if v},
        "events": {
            "url": "/t/e",
            "techs": {
                x.id: x.category
                for x in policy.tracking
                if x.type in ("web_beacon", "sdk", "pixel") and "web" in x.platforms
            },
        },
        "texts": {
            "title": _("Your privacy choices"),
            "body": _(
                "We use cookies and similar technologies. Those that are strictly necessary "
                "are always on; we use the others only if you agree. You can change your "
                "choice at any time in the privacy settings."
            ),
            "acceptAll": _("Accept all"),
            "rejectAll": _("Reject all"),
            "customise": _("Customise"),
            "save": _("Save choices"),
            "alwaysOn": _("Always on"),
            "gpcNote": _(
                "Your browser's Global Privacy Control signal is honoured: this stays off."
            ),
            "policy": _("Privacy policy"),
            "preferences": _("Privacy settings"),
            "saved": _("Your choices have been saved."),
            "error": _("Your choice could not be saved; please try again."),
        },
        "links": {
            "policy": f"/privacy?lang={locale}",
            "preferences": f"/privacy/preferences?lang={locale}",
        },
    }


def banner_assets() -> tuple[str, str]:
    """The banner's static script and stylesheet, as shipped in the package."""
    folder = resources.files("troth.consent") / "banner"
    js = (folder / "banner.js").read_text(encoding="utf-8")
    css = (folder / "banner.css").read_text(encoding="utf-8")
    return js, css
