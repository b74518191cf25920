"""The rendered policy as a tree of numbered sections, built from a :class:`Policy`.

Sections are numbered by troth after the tree is built, and every cross-reference is an
id resolved against the tree, so a reference can never point at a section that is not
there. Policy texts may refer to sections and entities with ``[[id]]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from troth.errors import RenderError
from troth.policy.model import Activity, Policy, Purpose, Recipient
from troth.policy.vocabulary import vocabulary
from troth.render.i18n import Translator
from troth.render.transfer_text import transfer_statements

__all__ = [
    "REF_PATTERN",
    "Block",
    "BulletList",
    "Document",
    "Para",
    "Section",
    "Span",
    "Table",
    "build_document",
    "legal_article",
]

REF_PATTERN = re.compile(r"\[\[([a-z][a-z0-9_.]*)\]\]")


@dataclass
class Span:
    text: str = ""
    ref: str | None = None
    href: str | None = None
    strong: bool = False


@dataclass
class Para:
    spans: list[Span]

    def plain(self) -> str:
        return "".join(s.text for s in self.spans)


@dataclass
class BulletList:
    items: list[tuple[Para, list[Para]]]


@dataclass
class Table:
    id: str
    headers: list[str]
    rows: list[list[Para]]


Block = Para | BulletList | Table


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)
    number: str = ""
    anchors: list[tuple[str, str]] = field(default_factory=list)

    def walk(self) -> Iterator[Section]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Document:
    title: str
    service: str
    locale: str
    version: str
    effective: str
    preamble: list[Block]
    sections: list[Section]
    targets: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def walk(self) -> Iterator[Section]:
        for section in self.sections:
            yield from section.walk()

    def ref_text(self, ref: str, t: Translator) -> tuple[str, str]:
        """(text, anchor) for a reference: 'Section 4 (Title)' or 'Name (Section 4)'."""
        if ref not in self.targets:
            raise RenderError(f"reference [[{ref}]] points at nothing in the rendered policy")
        number, title, label = self.targets[ref]
        section = t.gettext("Section {number} ({title})").format(number=number, title=title)
        if label:
            return t.gettext("{label} (Section {number})").format(label=label, number=number), ref
        return section, ref


def legal_article(key: str, t: Translator) -> str:
    """'eu-gdpr:A6-1-b' -> 'Art. 6(1)(b) GDPR' (or 'Art. 6 Abs. 1 lit. b DSGVO')."""
    m = re.match(r"^eu-gdpr:A(\d+)(?:-(\d+))?(?:-([a-z]))?", key)
    if not m:
        return key.split(":", 1)[-1]
    article, paragraph, letter = m.groups()
    if paragraph and letter:
        message = t.gettext("Art. {article}({paragraph})({letter}) GDPR")
    elif paragraph:
        message = t.gettext("Art. {article}({paragraph}) GDPR")
    else:
        message = t.gettext("Art. {article} GDPR")
    return message.format(article=article, paragraph=paragraph, letter=letter)


def _para(text: str) -> Para:
    """A paragraph from text that may contain ``[[id]]`` references."""
    spans: list[Span] = []
    pos = 0
    for m in REF_PATTERN.finditer(text):
        if m.start() > pos:
            spans.append(Span(text[pos : m.start()]))
        spans.append(Span(ref=m.group(1)))
        pos = m.end()
    if pos < len(text):
        spans.append(Span(text[pos:]))
    return Para(spans)


def _paras(text: str) -> list[Block]:
    return [_para(chunk.strip()) for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]


class _Builder:
    def __init__(self, policy: Policy, t: Translator) -> None:
        self.p = policy
        self.t = t
        self._ = t.gettext
        vocab = vocabulary()
        self.kind: Callable[[str], str | None] = lambda basis: vocab.basis_kind(
            vocab.legal_basis(basis)
        )
        self.category_names = {c.id: t.text(c.name) for c in policy.categories}
        self.subject_names = {s.id: t.text(s.name) for s in policy.subjects}
        self.consent_names = {c.id: t.text(c.name) for c in policy.consent_categories}
        self.purpose_titles = {p.id: t.text(p.title) for p in policy.purposes}
        self.recipient_names = {r.id: t.text(r.name) for r in policy.recipients}

    # --- helpers ---------------------------------------------------------------------

    def text(self, value: str | dict[str, str] | None) -> list[Block]:
        return _paras(self.t.text(value)) if value else []

    def own(self, value: str | dict[str, str] | None, fallback: str) -> list[Block]:
        """The policy's own prose for a place, or troth's generic words."""
        return self.text(value) if value else [_para(fallback)]

    def basis_label(self, basis: str) -> str:
        _ = self._
        labels = {
            "consent": _("your consent"),
            "contract": _("the performance of our contract with you"),
            "legal_obligation": _("compliance with a legal obligation"),
            "vital_interest": _("the protection of vital interests"),
            "public_task": _("a task carried out in the public interest"),
            "legitimate_interest": _("our legitimate interests"),
        }
        kind = self.kind(basis)
        return labels.get(kind or "", basis)

    def names(self, ids: list[str], table: dict[str, str]) -> str:
        return self.t.join([table.get(i, i) for i in ids])

    # --- sections --------------------------------------------------------------------

    def controller(self) -> Section:
        _ = self._
        c = self.p.controller
        s = Section("controller", _("Who is responsible for your data"))
        s.blocks.append(
            _para(
                _("{controller} is the controller of your personal data for {service}.").format(
                    controller=c.name, service=self.p.service
                )
            )
        )
        rows = [
            [_para(_("Address")), _para(self.t.text(c.address))],
            [_para(_("E-mail")), Para([Span(c.email, href=f"mailto:{c.email}")])],
        ]
        if c.phone:
            rows.append([_para(_("Telephone")), _para(c.phone)])
        if c.dpo is not None:
            dpo = ", ".join(x for x in (self.t.text(c.dpo.name), c.dpo.email, c.dpo.phone) if x)
            rows.append([_para(_("Data protection officer")), _para(dpo)])
        if c.representative is not None:
            rep = ", ".join(
                x for x in (self.t.text(c.representative.name), c.representative.email) if x
            )
            rows.append([_para(_("Representative")), _para(rep)])
        establishments = self.t.join([self.t.country(x) for x in c.establishments])
        rows.append([_para(_("Established in")), _para(establishments)])
        s.blocks.append(Table("controller.contact", [_("Contact"), _("Details")], rows))
        return s

    def collection(self) -> Section:
        _ = self._
        s = Section("collection", _("What information we collect"))
        s.blocks += self.own(
            self.p.texts.collection,
            _("This section lists the kinds of information we process about you."),
        )
        s.blocks.append(
            _para(
                _(
                    "To understand the context in which we collect each kind, see [[use]]. "
                    "For the mechanisms we use to collect some of it, such as cookies, see "
                    "[[tracking]]."
                )
            )
        )
        sources = {
            "data_subject": _("from you"),
            "observed": _("from your use of our services"),
            "derived": _("derived by us from other information"),
            "third_party": _("from third parties"),
            "public": _("from public sources"),
        }
        rows = []
        for c in self.p.categories:
            rows.append(
                [
                    Para([Span(self.t.text(c.name), strong=True)]),
                    _para(self.t.text(c.description) if c.description else ""),
                    _para(sources[c.source]),
                ]
            )
            s.anchors.append((f"category.{c.id}", self.t.text(c.name)))
        s.blocks.append(
            Table("collection.categories", [_("Information"), _("Details"), _("Source")], rows)
        )
        indirect = [c for c in self.p.categories if c.source in ("third_party", "public")]
        if indirect:
            sub = Section("collection.sources", _("Information we receive from others"))
            items: list[tuple[Para, list[Para]]] = []
            for c in indirect:
                detail = self.t.text(c.source_detail) if c.source_detail else ""
                head = Para(
                    [Span(self.t.text(c.name), strong=True), Span(": "), *_para(detail).spans]
                )
                items.append((head, []))
            sub.blocks.append(BulletList(items))
            s.children.append(sub)
        return s

    def use(self) -> Section:
        _ = self._
        s = Section("use", _("How we use your information"))
        s.blocks += self.own(
            self.p.texts.use, _("We use your information for the purposes described below.")
        )
        s.blocks.append(
            _para(
                _(
                    "Each purpose is split into activities, and each activity has exactly one "
                    "legal basis."
                )
            )
        )
        for purpose in self.p.purposes:
            s.children.append(self.purpose(purpose))
        return s

    def purpose(self, purpose: Purpose) -> Section:
        _ = self._
        s = Section(f"purpose.{purpose.id}", self.t.text(purpose.title))
        s.blocks += self.text(purpose.description)
        items: list[tuple[Para, list[Para]]] = []
        for a in purpose.activities:
            items.append((_para(self.t.text(a.description)), self.activity_details(a)))
            s.anchors.append((f"activity.{a.id}", self.t.text(a.description)))
        s.blocks.append(BulletList(items))
        sharing = [r for r in self.p.recipients if purpose.id in r.purposes]
        if sharing:
            refs: list[Span] = [Span(_("For this purpose we share information with: "))]
            for i, r in enumerate(sharing):
                if i:
                    refs.append(Span("; "))
                refs.append(Span(ref=f"recipient.{r.id}"))
            refs.append(Span("."))
            s.blocks.append(Para(refs))
        return s

    def activity_details(self, a: Activity) -> list[Para]:
        _ = self._
        kind = self.kind(a.basis)
        out = [
            _para(
                _("Legal basis: {basis} ({article}).").format(
                    basis=self.basis_label(a.basis), article=legal_article(a.basis, self.t)
                )
            )
        ]
        if kind == "legitimate_interest" and a.legitimate_interest:
            out.append(
                _para(
                    _(
                        "Our legitimate interest: {interest} "
                        "You may object at any time; see [[rights]]."
                    ).format(interest=self.t.text(a.legitimate_interest))
                )
            )
        if kind == "consent" and a.consent:
            out.append(
                _para(
                    _(
                        "Only with your consent to “{consent}”, which you can withdraw at any "
                        "time as easily as you gave it; see [[tracking.choices]]."
                    ).format(consent=self.consent_names.get(a.consent, a.consent))
                )
            )
        if kind == "legal_obligation" and a.legal_obligation:
            out.append(
                _para(_("Legal obligation: {law}").format(law=self.t.text(a.legal_obligation)))
            )
        out.append(
            _para(
                _("Information used: {categories}. Concerns: {subjects}.").format(
                    categories=self.names(a.categories, self.category_names),
                    subjects=self.names(a.subjects, self.subject_names),
                )
            )
        )
        if a.retention is not None:
            out.append(_para(self.retention_text(a)))
        for example in a.examples:
            out.append(_para(_("Example: {example}").format(example=self.t.text(example))))
        return out

    def retention_text(self, a: Activity) -> str:
        _ = self._
        assert a.retention is not None
        period = self.t.duration(a.retention.period)
        if a.retention.after:
            return _("Kept for {period} after {event}.").format(
                period=period, event=self.t.text(a.retention.after)
            )
        return _("Kept for {period}.").format(period=period)

    def tracking(self) -> Section:
        _ = self._
        p = self.p
        s = Section("tracking", _("Tracking technologies and cookies"))
        about = Section("tracking.about", _("About tracking technologies"))
        about.blocks += self.own(
            p.texts.tracking,
            _(
                "We use the technologies below to collect some of the information "
                "in [[collection]]."
            ),
        )
        kinds = {t.type for t in p.tracking}
        explain: list[tuple[set[str], str, str | dict[str, str] | None, str]] = [
            (
                {"cookie"},
                _("Cookies"),
                p.texts.cookies,
                _("Cookies are small text files stored on your device."),
            ),
            (
                {"local_storage", "session_storage"},
                _("Local storage"),
                p.texts.local_storage,
                _("Websites can keep information in your browser's storage."),
            ),
            (
                {"pixel", "web_beacon"},
                _("Pixel tags and web beacons"),
                p.texts.pixels,
                _(
                    "Small invisible images or code that tell us a page was viewed "
                    "or an e-mail opened."
                ),
            ),
            (
                {"tracking_link"},
                _("Tracking links"),
                p.texts.tracking_links,
                _("Links that tell us they were clicked before taking you to their destination."),
            ),
            (
                {"sdk"},
                _("Software development kits (SDKs)"),
                p.texts.sdks,
                _("Code from partners built into our apps."),
            ),
        ]
        items = []
        for types, title, own, fallback in explain:
            if kinds & types:
                body = self.t.text(own) if own else fallback
                items.append(
                    (
                        Para([Span(title, strong=True)]),
                        [_para(x.strip()) for x in re.split(r"\n\s*\n", body) if x.strip()],
                    )
                )
        if items:
            about.blocks.append(BulletList(items))
        s.children.append(about)

        why = Section("tracking.why", _("Why we use them"))
        why.blocks.append(_para(_("Each technology belongs to one of these categories:")))
        used = [c for c in p.consent_categories if any(t.category == c.id for t in p.tracking)]
        cat_items = []
        for cc in used:
            techs = [t for t in p.tracking if t.category == cc.id]
            purposes = list(dict.fromkeys(pid for t in techs for pid in t.purposes))
            details = [_para(self.t.text(cc.description))]
            if cc.required:
                reason = self.t.text(cc.required_reason) if cc.required_reason else ""
                details.append(
                    _para(
                        (
                            _("Always active: strictly necessary for a service you asked for.")
                            + " "
                            + reason
                        ).strip()
                    )
                )
            else:
                details.append(_para(_("Used only with your consent in regions that require it.")))
            refs: list[Span] = [Span(_("Purposes: "))]
            for i, pid in enumerate(purposes):
                if i:
                    refs.append(Span("; "))
                refs.append(Span(ref=f"purpose.{pid}"))
            details.append(Para(refs))
            cat_items.append((Para([Span(self.t.text(cc.name), strong=True)]), details))
            why.anchors.append((f"consent.{cc.id}", self.t.text(cc.name)))
        why.blocks.append(BulletList(cat_items))
        why.blocks.append(_para(_("Every technology is listed in [[tracking.table]].")))
        s.children.append(why)

        third = [t for t in p.tracking if t.party == "third"]
        if third:
            tp = Section("tracking.third_parties", _("Third parties"))
            tp.blocks += self.own(
                p.texts.third_parties,
                _("We allow some partners to place tracking technologies in our services."),
            )
            vendors = list(dict.fromkeys(t.vendor for t in third if t.vendor))
            vitems = []
            for vid in vendors:
                techs = [t for t in third if t.vendor == vid]
                cats = self.t.join(
                    list(
                        dict.fromkeys(self.consent_names.get(t.category, t.category) for t in techs)
                    )
                )
                vitems.append(
                    (
                        Para([Span(ref=f"recipient.{vid}"), Span(": " + cats)]),
                        [_para(self.t.text(t.description)) for t in techs],
                    )
                )
            tp.blocks.append(BulletList(vitems))
            s.children.append(tp)

        s.children.append(self.choices())
        s.children.append(self.tracking_table())
        return s

    def choices(self) -> Section:
        _ = self._
        p = self.p
        s = Section("tracking.choices", _("Your choices"))
        s.blocks += self.own(
            p.texts.choices, _("You decide which non-essential technologies we may use.")
        )
        groups = (
            ("ours", _("Choices we provide")),
            ("third_party", _("Choices provided by others")),
        )
        for provider, heading in groups:
            chosen = [c for c in p.choices if c.provider == provider]
            if not chosen:
                continue
            s.blocks.append(Para([Span(heading, strong=True)]))
            items = []
            for c in chosen:
                title = (
                    Para([Span(self.t.text(c.title), href=c.url)])
                    if c.url
                    else _para(self.t.text(c.title))
                )
                details: list[Para] = [b for b in self.text(c.description) if isinstance(b, Para)]
                if c.regions:
                    details.append(
                        _para(
                            _("For people in: {regions}.").format(
                                regions=self.t.join([self.t.country(r) for r in c.regions])
                            )
                        )
                    )
                if c.note:
                    details += [b for b in self.text(c.note) if isinstance(b, Para)]
                items.append((title, [d for d in details if isinstance(d, Para)]))
                s.anchors.append((f"choice.{c.id}", self.t.text(c.title)))
            s.blocks.append(BulletList(items))
        if p.jurisdictions:
            s.blocks.append(Para([Span(_("Where you live"), strong=True)]))
            models = {
                "opt_in": _("non-essential technologies are used only after you agree"),
                "opt_out": _("non-essential technologies may be used until you object"),
                "notice": _("we inform you and you can object at any time"),
            }
            items = []
            for j in p.jurisdictions:
                details = [_para(models[j.consent_model] + ".")]
                if j.gpc == "opt_out" and j.gpc_refuses:
                    details.append(
                        _para(
                            _(
                                "We treat a Global Privacy Control signal from your browser as "
                                "your objection to: {categories}."
                            ).format(categories=self.names(j.gpc_refuses, self.consent_names))
                        )
                    )
                items.append((Para([Span(self.t.text(j.name), strong=True)]), details))
            s.blocks.append(BulletList(items))
        return s

    def tracking_table(self) -> Section:
        _ = self._
        s = Section("tracking.table", _("List of tracking technologies"))
        type_names = tracking_type_names(self.t)
        rows = []
        for t in self.p.tracking:
            party = (
                _("first party")
                if t.party == "first"
                else self.recipient_names.get(t.vendor or "", _("third party"))
            )
            rows.append(
                [
                    Para([Span(t.name or t.pattern or "", strong=True)]),
                    _para(type_names[t.type]),
                    _para(party),
                    _para(self.consent_names.get(t.category, t.category)),
                    _para(self.names(t.purposes, self.purpose_titles)),
                    _para(self.t.duration(t.expiry) if t.expiry is not None else "—"),
                    _para(self.t.text(t.description)),
                ]
            )
            s.anchors.append((f"tracking.{t.id}", t.name or t.pattern or t.id))
        s.blocks.append(
            Table(
                "tracking.technologies",
                [
                    _("Name"),
                    _("Type"),
                    _("Set by"),
                    _("Category"),
                    _("Purposes"),
                    _("Expiry"),
                    _("Description"),
                ],
                rows,
            )
        )
        return s

    def sharing(self) -> Section:
        _ = self._
        s = Section("sharing", _("Who we share your information with"))
        s.blocks += self.own(
            self.p.texts.sharing,
            _("We share personal data only with the recipients below, for the purposes named."),
        )
        types = recipient_type_names(self.t)
        roles = {
            "processor": _("processes data on our behalf and on our instructions"),
            "controller": _("decides on its own use of the data"),
            "joint_controller": _("decides jointly with us"),
        }
        for kind, label in types.items():
            group = [r for r in self.p.recipients if r.type == kind]
            if not group:
                continue
            s.blocks.append(Para([Span(label, strong=True)]))
            items = []
            for r in group:
                items.append(self.recipient_item(r, roles))
                s.anchors.append((f"recipient.{r.id}", self.t.text(r.name)))
            s.blocks.append(BulletList(items))
        return s

    def recipient_item(self, r: Recipient, roles: dict[str, str]) -> tuple[Para, list[Para]]:
        _ = self._
        details = [_para(self.t.text(r.description)), _para(_upper_first(roles[r.role]) + ".")]
        refs: list[Span] = [Span(_("Purposes: "))]
        for i, pid in enumerate(r.purposes):
            if i:
                refs.append(Span("; "))
            refs.append(Span(ref=f"purpose.{pid}"))
        details.append(Para(refs))
        if r.categories:
            details.append(
                _para(
                    _("Information: {categories}.").format(
                        categories=self.names(r.categories, self.category_names)
                    )
                )
            )
        details.append(
            _para(
                _("Located in: {countries}.").format(
                    countries=self.t.join([self.t.country(c) for c in r.countries])
                )
            )
        )
        if r.transfer is not None:
            details.append(Para([Span(_("Transfer safeguards: ")), Span(ref="transfers")]))
        if r.opt_out:
            details.append(Para([Span(_("Opt out: ")), Span(r.opt_out, href=r.opt_out)]))
        if r.privacy_policy:
            details.append(
                Para([Span(_("Privacy policy: ")), Span(r.privacy_policy, href=r.privacy_policy)])
            )
        return Para([Span(self.t.text(r.name), strong=True)]), details

    def transfers(self) -> Section | None:
        _ = self._
        moving = [r for r in self.p.recipients if r.transfer is not None]
        if not moving:
            return None
        s = Section("transfers", _("International transfers"))
        s.blocks += self.own(
            self.p.texts.transfers,
            _("Some recipients are in countries whose laws may differ from those where you live."),
        )
        mechanisms = transfer_mechanism_names(self.t)
        rows = []
        items: list[tuple[Para, list[Para]]] = []
        for r in moving:
            assert r.transfer is not None
            name = mechanisms.get(r.transfer.mechanism, r.transfer.mechanism)
            article = legal_article(r.transfer.mechanism, self.t)
            rows.append(
                [
                    Para([Span(ref=f"recipient.{r.id}")]),
                    _para(self.t.join([self.t.country(c) for c in r.countries])),
                    _para(name),
                    _para(article),
                ]
            )
            statements = transfer_statements(self.p, r, self.t, mechanism=name, article=article)
            items.append(
                (
                    Para([Span(self.t.text(r.name), strong=True)]),
                    [_para(x) for x in statements],
                )
            )
            s.anchors.append((f"transfer.{r.id}", self.t.text(r.name)))
        s.blocks.append(
            Table(
                "transfers.table",
                [_("Recipient"), _("Countries"), _("Safeguard"), _("Legal provision")],
                rows,
            )
        )
        s.blocks.append(_para(_("How each transfer is protected:")))
        s.blocks.append(BulletList(items))
        s.blocks.append(
            _para(
                _("You can ask us for a copy of the safeguards at {email}.").format(
                    email=self.p.controller.email
                )
            )
        )
        return s

    def retention(self) -> Section:
        _ = self._
        s = Section("retention", _("How long we keep your information"))
        s.blocks += self.own(
            self.p.texts.retention,
            _(
                "We keep personal data only as long as each activity needs it, "
                "then delete or anonymise it."
            ),
        )
        rows = []
        for purpose, a in self.p.activities():
            rows.append(
                [
                    Para([Span(ref=f"purpose.{purpose.id}")]),
                    _para(self.t.text(a.description)),
                    _para(self.retention_text(a) if a.retention else _("Not stated")),
                ]
            )
        s.blocks.append(
            Table("retention.table", [_("Purpose"), _("Activity"), _("Retention")], rows)
        )
        return s

    def security(self) -> Section:
        _ = self._
        s = Section("security", _("How we protect your information"))
        s.blocks += self.own(
            self.p.texts.security,
            _("We protect your data against unauthorised access, loss and modification."),
        )
        type_names = {
            "management": _("Management measures"),
            "organisational": _("Organisational measures"),
            "technical": _("Technical measures"),
            "physical": _("Physical measures"),
        }
        for kind, label in type_names.items():
            group = [m for m in self.p.security_measures if m.type == kind]
            if group:
                s.blocks.append(Para([Span(label, strong=True)]))
                s.blocks.append(
                    BulletList(
                        [
                            (
                                Para([Span(self.t.text(m.title), strong=True)]),
                                [_para(self.t.text(m.description))],
                            )
                            for m in group
                        ]
                    )
                )
        return s

    def rights(self) -> Section:
        _ = self._
        s = Section("rights", _("Your rights"))
        s.blocks += self.own(
            self.p.texts.rights, _("Data protection law gives you the rights below.")
        )
        names = right_names(self.t)
        items = []
        for r in self.p.rights:
            details = self.text(r.how)
            if r.url:
                details.append(Para([Span(r.url, href=r.url)]))
            items.append(
                (
                    Para([Span(names[r.right], strong=True)]),
                    [d for d in details if isinstance(d, Para)],
                )
            )
            s.anchors.append((f"right.{r.right}", names[r.right]))
        s.blocks.append(BulletList(items))
        authorities = [j for j in self.p.jurisdictions if j.authority]
        if authorities:
            s.blocks.append(_para(_("You can complain to a supervisory authority, in particular:")))
            s.blocks.append(
                BulletList(
                    [
                        (
                            Para(
                                [
                                    Span(self.t.text(j.name) + ": ", strong=True),
                                    Span(j.authority.name, href=j.authority.url),
                                ]
                            ),
                            [],
                        )
                        for j in authorities
                        if j.authority
                    ]
                )
            )
        return s

    def changes(self) -> Section:
        _ = self._
        s = Section("changes", _("Changes to this policy"))
        s.blocks += self.own(
            self.p.texts.changes,
            _(
                "When we change this policy we publish the new version here with its "
                "effective date. When a change lets us do more with your data, we ask for "
                "your consent again where it is needed, only for what changed."
            ),
        )
        s.blocks.append(
            _para(
                _("Version {version}, effective {date}.").format(
                    version=self.p.version, date=self.t.date(self.p.effective)
                )
            )
        )
        return s

    def build(self) -> Document:
        _ = self._
        p = self.p
        preamble: list[Block] = []
        preamble += self.text(p.texts.intro)
        preamble += self.text(p.texts.personal_data)
        sections = [
            self.controller(),
            self.collection(),
            self.use(),
            self.tracking() if p.tracking else None,
            self.sharing() if p.recipients else None,
            self.transfers(),
            self.retention(),
            self.security() if p.security_measures or p.texts.security else None,
            self.rights(),
            self.changes(),
        ]
        doc = Document(
            title=_("Privacy policy"),
            service=p.service,
            locale=self.t.locale,
            version=p.version,
            effective=self.t.date(p.effective),
            preamble=preamble,
            sections=[x for x in sections if x is not None],
        )
        _number(doc.sections, "")
        for section in doc.walk():
            doc.targets[section.id] = (section.number, section.title, "")
            for anchor, label in section.anchors:
                doc.targets[anchor] = (section.number, section.title, label)
        return doc


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _number(sections: list[Section], prefix: str) -> None:
    for i, section in enumerate(sections, start=1):
        section.number = f"{prefix}{i}"
        _number(section.children, f"{section.number}.")


def tracking_type_names(t: Translator) -> dict[str, str]:
    _ = t.gettext
    return {
        "cookie": _("Cookie"),
        "local_storage": _("Local storage"),
        "session_storage": _("Session storage"),
        "pixel": _("Pixel tag"),
        "web_beacon": _("Web beacon"),
        "tracking_link": _("Tracking link"),
        "sdk": _("SDK"),
    }


def recipient_type_names(t: Translator) -> dict[str, str]:
    _ = t.gettext
    return {
        "group_company": _("Our group companies"),
        "service_provider": _("Service providers"),
        "partner": _("Business partners"),
        "advertising_network": _("Advertising networks"),
        "authority": _("Authorities, courts and other public bodies"),
    }


def transfer_mechanism_names(t: Translator) -> dict[str, str]:
    _ = t.gettext
    return {
        "eu-gdpr:A45-3": _("Adequacy decision"),
        "eu-gdpr:A46-2-a": _("Legally binding instrument between public authorities"),
        "eu-gdpr:A46-2-b": _("Binding corporate rules"),
        "eu-gdpr:A46-2-c": _("Standard contractual clauses"),
        "eu-gdpr:A46-2-d": _("Standard contractual clauses adopted by a supervisory authority"),
        "eu-gdpr:A46-2-e": _("Approved code of conduct"),
        "eu-gdpr:A46-2-f": _("Approved certification"),
        "eu-gdpr:A49-1-a": _("Derogation: your explicit consent"),
        "eu-gdpr:A49-1-b": _("Derogation: performance of a contract with you"),
        "eu-gdpr:A49-1-c": _("Derogation: a contract in your interest"),
        "eu-gdpr:A49-1-d": _("Derogation: important reasons of public interest"),
        "eu-gdpr:A49-1-e": _("Derogation: legal claims"),
        "eu-gdpr:A49-1-f": _("Derogation: vital interests"),
    }


def right_names(t: Translator) -> dict[str, str]:
    _ = t.gettext
    return {
        "access": _("Access"),
        "rectification": _("Rectification"),
        "erasure": _("Erasure"),
        "restriction": _("Restriction of processing"),
        "portability": _("Data portability"),
        "objection": _("Objection"),
        "withdraw_consent": _("Withdrawing consent"),
        "automated_decisions": _("Automated decisions"),
        "complaint": _("Complaint to a supervisory authority"),
    }


def build_document(policy: Policy, t: Translator, *, strict: bool = True) -> Document:
    """The policy as a numbered section tree in one locale; every reference resolves.

    With ``strict=False`` dangling references are left in place for a checker to report.
    """
    doc = _Builder(policy, t).build()
    if not strict:
        return doc
    for section in doc.walk():
        for block in section.blocks:
            for span in _spans(block):
                if span.ref is not None and span.ref not in doc.targets:
                    raise RenderError(
                        f"reference [[{span.ref}]] in section '{section.id}' points at nothing"
                    )
    for block in doc.preamble:
        for span in _spans(block):
            if span.ref is not None and span.ref not in doc.targets:
                raise RenderError(f"reference [[{span.ref}]] in the introduction points at nothing")
    return doc


def _spans(block: Block) -> Iterator[Span]:
    if isinstance(block, Para):
        yield from block.spans
    elif isinstance(block, BulletList):
        for head, details in block.items:
            yield from head.spans
            for d in details:
                yield from d.spans
    else:
        for row in block.rows:
            for cell in row:
                yield from cell.spans
