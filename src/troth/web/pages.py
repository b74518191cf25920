"""Server-rendered pages beyond the policy itself: the demo site and the preference centre.

Each (language, region) variant is rendered once when the app starts.
"""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from troth.consent.versions import PolicyHistory
from troth.policy.model import Policy
from troth.render.i18n import translator

__all__ = ["PageRenderer"]


class PageRenderer:
    def __init__(self, policy: Policy, history: PolicyHistory) -> None:
        self.policy = policy
        self.history = history
        self.env = Environment(
            loader=PackageLoader("troth.web", "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        regions = ["", *(j.id for j in policy.jurisdictions)]
        self._pages = {
            (name, lang, jid): self._render(name, lang, jid)
            for name in ("demo", "preferences")
            for lang in policy.languages
            for jid in regions
        }

    def demo(self, lang: str, jid: str) -> str:
        return self._pages[("demo", lang, jid)]

    def preferences(self, lang: str, jid: str) -> str:
        return self._pages[("preferences", lang, jid)]

    def _render(self, name: str, lang: str, jid: str) -> str:
        t = translator(lang, self.policy.default_language)
        return self.env.get_template(f"{name}.html.j2").render(
            _=t.gettext, t=t, lang=lang, jid=jid, **self._context(lang)
        )

    def _context(self, lang: str) -> dict[str, Any]:
        p = self.policy
        t = translator(lang, p.default_language)
        vendors = {r.id: t.text(r.name) for r in p.recipients}
        categories = []
        for c in p.consent_categories:
            techs = [x for x in p.tracking if x.category == c.id]
            if not techs:
                continue
            categories.append(
                {
                    "id": c.id,
                    "name": t.text(c.name),
                    "description": t.text(c.description),
                    "required": c.required,
                    "technologies": [
                        {
                            "name": x.name or x.pattern,
                            "vendor": vendors.get(x.vendor or "", p.service)
                            if x.party == "third"
                            else p.service,
                            "expiry": t.duration(x.expiry) if x.expiry is not None else "—",
                            "description": t.text(x.description),
                        }
                        for x in techs
                    ],
                }
            )
        choices = [
            {
                "title": t.text(c.title),
                "url": c.url,
                "description": t.text(c.description) if c.description else "",
                "note": t.text(c.note) if c.note else "",
                "regions": t.join([t.country(r) for r in c.regions]) if c.regions else "",
            }
            for c in p.choices
            if c.provider == "third_party"
        ]
        _ = t.gettext
        labels = {
            "banner_accept_all": _("Accepted all in the banner"),
            "banner_reject_all": _("Rejected all in the banner"),
            "banner_custom": _("Chose in the banner"),
            "preference_centre": _("Chose in the privacy settings"),
            "api": _("Recorded by the service"),
            "gpc": _("Global Privacy Control signal"),
            "given": _("given"),
            "refused": _("refused"),
            "withdrawn": _("withdrawn"),
            **{c.id: t.text(c.name) for c in p.consent_categories},
        }
        return {
            "labels": json.dumps(labels, ensure_ascii=False),
            "service": p.service,
            "version": p.version,
            "languages": p.languages,
            "categories": categories,
            "choices": choices,
            "jurisdictions": [(j.id, t.text(j.name)) for j in p.jurisdictions],
        }
