"""A scan's result, and its text, JSON and self-contained HTML reports.

The HTML report carries its screenshots as ``data:`` URIs and its style inline, so it is one
file that can be archived with a CI run. Nothing a page sent is echoed without escaping.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, select_autoescape

from troth.scan.classify import OCD_ATTRIBUTION
from troth.scan.compare import Finding
from troth.scan.observations import Observations, page_address

__all__ = ["ScanReport", "render_html", "render_json", "render_text"]


@dataclass(frozen=True)
class ScanReport:
    observations: Observations
    findings: list[Finding]
    policy: str | None  # "<service> <version>" of the policy compared with, if any
    jurisdiction: str | None = None  # "<id> (<consent model>)" consent was judged under

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "violation"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def summary(self) -> str:
        obs = self.observations
        return (
            f"{page_address(obs.start_url)}: {len(obs.pages['before'])} page(s) before consent, "
            f"{len(obs.pages['after'])} after{'' if obs.accepted else ' (consent not given)'}; "
            f"{len({(c.name, c.host) for c in obs.cookies})} cookie(s), "
            f"{len({(s.kind, s.key) for s in obs.storage})} storage key(s), "
            f"{len({r.host for r in obs.requests})} third-party host(s) — "
            f"{len(self.violations)} violation(s), {len(self.warnings)} warning(s)"
        )

    def as_dict(self) -> dict[str, Any]:
        obs = self.observations
        return {
            "url": page_address(obs.start_url),
            "policy": self.policy,
            "jurisdiction": self.jurisdiction,
            "gpc": obs.gpc,
            "accepted": obs.accepted,
            "pages": {phase: _addresses(urls) for phase, urls in obs.pages.items()},
            "links_skipped": obs.skipped,
            "violations": len(self.violations),
            "warnings": len(self.warnings),
            "findings": [f.as_dict() for f in self.findings],
            "cookies": [
                {
                    "name": c.name,
                    "domain": c.domain,
                    "path": c.path,
                    "lifetime_seconds": c.lifetime,
                    "phase": c.phase,
                    "secure": c.secure,
                    "http_only": c.http_only,
                    "same_site": c.same_site,
                }
                for c in sorted(obs.cookies, key=lambda c: (c.name, c.domain, c.phase))
            ],
            "storage": [
                {"kind": s.kind, "key": s.key, "origin": s.origin, "phase": s.phase}
                for s in obs.storage
            ],
            "requests": _request_rows(obs),
            "problems": obs.problems,
            "attribution": OCD_ATTRIBUTION,
        }


def _addresses(urls: list[str]) -> list[str]:
    """Pages as a report shows them (no query string), each once, in crawl order."""
    return list(dict.fromkeys(page_address(u) for u in urls))


def _request_rows(obs: Observations) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str, str, str | None], dict[str, Any]] = {}
    for r in obs.requests:
        key = (r.phase, r.host, r.resource_type, r.gcs)
        row = rows.setdefault(
            key,
            {
                "phase": r.phase,
                "host": r.host,
                "type": r.resource_type,
                "gcs": r.gcs,
                "count": 0,
                "beacon_like": 0,
            },
        )
        row["count"] += 1
        row["beacon_like"] += int(r.beacon)
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0] != "before", k[1], k[2], k[3] or ""))]


def render_json(report: ScanReport) -> str:
    return json.dumps(report.as_dict(), ensure_ascii=False, indent=2)


def render_text(report: ScanReport) -> str:
    lines: list[str] = []
    for f in report.findings:
        lines.append(f"{f.severity:9} {f.kind:24} {f.message}")
        if f.suggestion:
            lines.extend("    " + line for line in f.suggestion.splitlines())
    lines.extend(f"problem   {p}" for p in report.observations.problems)
    if report.jurisdiction:
        gpc = ", with a Global Privacy Control signal" if report.observations.gpc else ""
        lines.append(f"Consent judged under jurisdiction {report.jurisdiction}{gpc}.")
    lines.append(report.summary())
    if any(f.classification for f in report.findings):
        lines.append(f"Cookie classifications: {OCD_ATTRIBUTION}")
    return "\n".join(lines)


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>troth scan: {{ url }}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;
color:#1a1a1a}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.violation{color:#a30000;font-weight:600}.warning{color:#7a5200}
pre{background:#f5f5f5;padding:.5rem;overflow:auto;margin:.3rem 0}
figure{display:inline-block;margin:0 1rem 1rem 0;width:45%}
figure img{width:100%;border:1px solid #ccc}
</style></head><body>
<h1>troth scan</h1>
<p>{{ summary }}</p>
{% if policy %}<p>Compared with the policy {{ policy }}{% if jurisdiction %}; consent judged
under jurisdiction {{ jurisdiction }}{% if data.gpc %}, with a Global Privacy Control
signal{% endif %}{% endif %}.</p>{% endif %}
<section><h2>Screenshots</h2>
{% for shot in shots %}<figure><img alt="{{ shot.caption }}" src="{{ shot.src }}">
<figcaption>{{ shot.caption }}</figcaption></figure>{% endfor %}
</section>
<section><h2>Findings</h2>
{% if findings %}<table><thead><tr><th>severity</th><th>kind</th><th>finding</th></tr></thead>
<tbody>
{% for f in findings %}<tr><td class="{{ f.severity }}">{{ f.severity }}</td><td>{{ f.kind }}</td>
<td>{{ f.message }}{% if f.suggestion %}<pre>{{ f.suggestion }}</pre>{% endif %}</td></tr>
{% endfor %}</tbody></table>{% else %}<p>No findings.</p>{% endif %}
</section>
<section><h2>Cookies</h2><table><thead><tr><th>name</th><th>domain</th><th>path</th>
<th>lifetime</th><th>seen</th></tr></thead><tbody>
{% for c in data.cookies %}<tr><td>{{ c.name }}</td><td>{{ c.domain }}</td><td>{{ c.path }}</td>
<td>{{ c.lifetime_seconds | lifetime }}</td>
<td>{{ c.phase }} consent</td></tr>{% else %}<tr><td colspan="5">none</td></tr>{% endfor %}
</tbody></table></section>
<section><h2>Storage</h2><table><thead><tr><th>kind</th><th>key</th><th>origin</th><th>seen</th>
</tr></thead><tbody>{% for s in data.storage %}<tr><td>{{ s.kind }}</td><td>{{ s.key }}</td>
<td>{{ s.origin }}</td><td>{{ s.phase }} consent</td></tr>{% else %}<tr><td colspan="4">none</td>
</tr>{% endfor %}</tbody></table></section>
<section><h2>Third-party requests</h2><table><thead><tr><th>seen</th><th>host</th><th>type</th>
<th>requests</th><th>beacon-like</th><th>Consent Mode gcs</th></tr></thead><tbody>
{% for r in data.requests %}<tr><td>{{ r.phase }} consent</td><td>{{ r.host }}</td>
<td>{{ r.type }}</td>
<td>{{ r.count }}</td><td>{{ r.beacon_like }}</td><td>{{ r.gcs or "" }}</td></tr>
{% else %}<tr><td colspan="6">none</td></tr>{% endfor %}
</tbody></table></section>
<section><h2>Pages</h2>{% for phase, urls in data.pages.items() %}<h3>{{ phase }} consent</h3>
<ul>{% for u in urls %}<li>{{ u }}</li>{% endfor %}</ul>{% endfor %}</section>
{% if data.problems %}<section><h2>Problems</h2><ul>
{% for p in data.problems %}<li>{{ p }}</li>{% endfor %}</ul></section>{% endif %}
<footer><p>Cookie classifications: {{ attribution }}.</p></footer>
</body></html>
"""

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def _lifetime(seconds: int | None) -> str:
    if seconds is None:
        return "session"
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds} seconds"


_ENV.filters["lifetime"] = _lifetime


def render_html(report: ScanReport) -> str:
    obs = report.observations
    shots = [
        {
            "caption": f"{s.url} — {s.phase} consent",
            "src": "data:image/png;base64," + base64.b64encode(s.png).decode("ascii"),
        }
        for s in sorted(obs.screenshots, key=lambda s: s.phase != "before")
    ]
    return _ENV.from_string(_HTML).render(
        url=page_address(obs.start_url),
        summary=report.summary(),
        policy=report.policy,
        jurisdiction=report.jurisdiction,
        shots=shots,
        findings=report.findings,
        data=report.as_dict(),
        attribution=OCD_ATTRIBUTION,
    )
