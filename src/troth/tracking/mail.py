"""Tag an outgoing HTML e-mail for one recipient: tracking only where their consent allows it.

For a recipient whose consent covers the policy's e-mail technologies, every ``http(s)``
link becomes a signed tracking link (``{base}/t/l/{token}``) and an open pixel is added
(``{base}/t/p/{pixel}.gif?k=open&c={campaign}&m={token}``); every token carries the
recipient's jurisdiction, signed, so that their clicks and opens are judged under the
rules the e-mail was tagged under. Everyone else gets the e-mail
with clean links: no pixel, and the usual tracking parameters (``utm_*``, ``gclid``, ...)
removed from the links while every other parameter stays, in order.

The HTML is read with the standard library's :class:`html.parser.HTMLParser` and rewritten in
place: only the ``href`` value of a changed link is replaced (and the pixel inserted before
``</body>``); every other byte of the document is kept as it was. ``mailto:``, ``tel:``,
``#anchors``, relative links and anything that is not plainly ``http(s)`` (``javascript:``,
``data:`` ...) are never touched and never tracked.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from html.entities import html5
from html.parser import HTMLParser
from urllib.parse import quote, unquote_plus, urlsplit

from troth.errors import TrackingError
from troth.policy.model import Policy, TrackingTechnology
from troth.tracking.decide import decide_hit
from troth.tracking.links import MAX_TOKEN, LinkSigner

__all__ = [
    "CAMPAIGN_PATTERN",
    "MAX_HTML_BYTES",
    "OPEN_URL",
    "TRACKING_PARAMS",
    "EmailTechnologies",
    "TaggedEmail",
    "email_technologies",
    "strip_tracking_params",
    "tag_batch",
    "tag_email",
]

CAMPAIGN_PATTERN = r"^[a-z0-9_\-]{1,64}$"
_CAMPAIGN = re.compile(r"[a-z0-9_\-]{1,64}")
MAX_HTML_BYTES = 512 * 1024
# What an open token is signed for: the open pixel has no destination of its own.
OPEN_URL = "https://troth.invalid/open"
# Query parameters that identify a click or a recipient; ``utm_*`` are matched by prefix.
TRACKING_PARAMS = frozenset({"gclid", "fbclid", "mc_eid", "_hsenc", "_hsmi"})
_LINK_TAGS = frozenset({"a", "area"})
_HTML_SPACE = " \t\n\r\f"  # what browsers strip around a URL in an attribute
_TAG_NAME_END = "\t\n\r\f />\x00"
DEFAULT_TTL = 90 * 86400
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")  # as html's


@dataclass(frozen=True)
class TaggedEmail:
    html: str
    tracked: bool  # the recipient's consent allowed at least one e-mail technology
    links_rewritten: int  # links changed: made tracking links, or stripped of parameters
    pixel: bool  # an open pixel was added


@dataclass(frozen=True)
class EmailTechnologies:
    link: TrackingTechnology | None
    pixel: TrackingTechnology | None
    required: frozenset[str]  # consent categories that are always allowed


def email_technologies(policy: Policy) -> EmailTechnologies:
    """The first ``tracking_link`` and the first ``pixel`` the policy declares for e-mail.
    TrackingError if it declares neither."""
    link = next(
        (t for t in policy.tracking if t.type == "tracking_link" and "email" in t.platforms), None
    )
    pixel = next((t for t in policy.tracking if t.type == "pixel" and "email" in t.platforms), None)
    if link is None and pixel is None:
        raise TrackingError(
            "tracking: the policy declares no 'tracking_link' or 'pixel' technology with "
            "'email' in its platforms, so e-mails cannot be tagged"
        )
    required = frozenset(c.id for c in policy.consent_categories if c.required)
    return EmailTechnologies(link, pixel, required)


def strip_tracking_params(url: str) -> str | None:
    """``url`` without ``utm_*``, ``gclid``, ``fbclid``, ``mc_eid``, ``_hsenc`` and ``_hsmi``
    (names compared case-insensitively), or None when it has none of them. Everything else,
    the other parameters' order and spelling included, is kept as it was."""
    head, hash_sign, fragment = url.partition("#")
    path, question, query = head.partition("?")
    if not question:
        return None
    kept: list[str] = []
    for piece in query.split("&"):
        name = unquote_plus(piece.partition("=")[0]).lower()
        if name.startswith("utm_") or name in TRACKING_PARAMS:
            continue
        kept.append(piece)
    if len(kept) == len(query.split("&")):
        return None
    return path + ("?" + "&".join(kept) if kept else "") + hash_sign + fragment


# --- reading the document ----------------------------------------------------------------


@dataclass(frozen=True)
class _Link:
    start: int  # where the href value (with its quotes, if any) starts in the document
    end: int
    url: str  # the link's http(s) URL, entities decoded, surrounding spaces removed


@dataclass(frozen=True)
class _Document:
    html: str
    links: tuple[_Link, ...]
    images: tuple[str, ...]  # http(s) image sources, to notice an open pixel already there
    pixel_at: int  # where the open pixel goes: before </body>, else before </html>, else the end


def _http_url(value: str | None) -> str | None:
    """``value`` as a URL if it is plainly http(s) with a host, else None."""
    if value is None:
        return None
    url = value.strip(_HTML_SPACE)
    if not url or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def _scan_attributes(raw: str) -> list[tuple[str, str | None, int, int]]:
    """The attributes of one start tag's source text as (name, value as written, start,
    end), where start:end spans the value as written (quotes included). Mirrors
    HTMLParser's tolerant reading; the result is checked against the parser's own before
    anything is changed. Empty for a tag that is not worth the risk (an unterminated
    quote, ``href==...`` that browsers and HTMLParser read differently)."""
    n = len(raw)
    i = 1
    while i < n and raw[i] not in _TAG_NAME_END:
        i += 1
    found: list[tuple[str, str | None, int, int]] = []
    while i < n:
        c = raw[i]
        if c.isspace() or (c == "/" and raw[i + 1 : i + 2] != ">"):
            i += 1
            continue
        if c == ">" or c == "/":
            break
        name_start = i
        i += 1
        while i < n and not raw[i].isspace() and raw[i] not in "/=>":
            i += 1
        name = raw[name_start:i].lower()
        j = i
        while j < n and raw[j].isspace():
            j += 1
        if j >= n or raw[j] != "=":
            found.append((name, None, i, i))
            continue
        j += 1
        if raw[j : j + 1] == "=":
            return []
        while j < n and raw[j].isspace():
            j += 1
        if j < n and raw[j] in "'\"":
            close = raw.find(raw[j], j + 1)
            if close < 0:
                return []
            value, start, i = raw[j + 1 : close], j, close + 1
        else:
            start = j
            while j < n and raw[j] != ">" and not raw[j].isspace():
                j += 1
            value, i = raw[start:j], j
        found.append((name, value, start, i))
    return found


def _unescape_attribute(value: str) -> str:
    """An attribute value's character references decoded the way browsers do: unlike
    :func:`html.unescape`, a legacy reference without ';' stays as written when a letter,
    digit or '=' follows it (``?a=1&param=2`` keeps its ``&para``)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("#") or name in html5:
            return htmllib.unescape(match.group(0))
        for x in range(len(name) - 1, 1, -1):
            if name[:x] in html5:
                following = name[x]
                if (following.isascii() and following.isalnum()) or following == "=":
                    return match.group(0)
                return html5[name[:x]] + name[x:]
        return match.group(0)

    return _CHARREF.sub(one, value) if "&" in value else value


class _Reader(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0]
        self.line_starts.extend(i + 1 for i, c in enumerate(source) if c == "\n")
        self.links: list[_Link] = []
        self.images: list[str] = []
        self.body_end: int | None = None
        self.html_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            src = _http_url(next((v for k, v in attrs if k == "src"), None))
            if src is not None:
                self.images.append(src)
            return
        if tag not in _LINK_TAGS:
            return
        if _http_url(next((v for k, v in attrs if k == "href"), None)) is None:
            return  # not an http(s) link (as HTMLParser reads it): nothing to do
        raw = self.get_starttag_text()
        if raw is None:
            return
        at = self._offset()
        if self.source[at : at + len(raw)] != raw:
            return  # not where the parser says it is: leave it alone
        scanned = _scan_attributes(raw)
        as_parsed = [(n, htmllib.unescape(v) if v else v) for n, v, _s, _e in scanned]
        if as_parsed != attrs:
            return  # read differently from the parser: leave it alone
        # Browsers use the first href when an element has several.
        _name, value, start, end = next(a for a in scanned if a[0] == "href")
        url = _http_url(None if value is None else _unescape_attribute(value))
        if url is not None:
            self.links.append(_Link(at + start, at + end, url))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()
        elif tag == "html":
            self.html_end = self._offset()

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        # The standard library gives up with AssertionError on '<![foo[' outside of CDATA;
        # browsers read it as a bogus comment up to the next '>'.
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            end = self.rawdata.find(">", i + 3)
            return -1 if end < 0 else end + 1


def _read(source: str) -> _Document:
    if len(source.encode("utf-8", "surrogatepass")) > MAX_HTML_BYTES:
        raise TrackingError(f"html: at most {MAX_HTML_BYTES} bytes (512 KiB) can be tagged")
    reader = _Reader(source)
    try:
        reader.feed(source)
        reader.close()
    except AssertionError:  # pragma: no cover - parse_marked_section covers the known case
        raise TrackingError("html: cannot be read as HTML") from None
    if reader.body_end is not None:
        pixel_at = reader.body_end
    elif reader.html_end is not None:
        pixel_at = reader.html_end
    else:
        pixel_at = len(source)
    return _Document(source, tuple(reader.links), tuple(reader.images), pixel_at)


# --- writing it for a recipient ----------------------------------------------------------


def _base(base_url: str) -> str:
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base) if _http_url(base) == base else None
    if parts is None or parts.query or parts.fragment or "@" in parts.netloc:
        raise TrackingError(
            f"base_url: expected the http(s) address troth is reachable at, not {base_url[:60]!r}"
        )
    return base


def _campaign(campaign: str) -> str:
    if not _CAMPAIGN.fullmatch(campaign):
        raise TrackingError(
            "campaign: expected 1-64 characters of lowercase letters, digits, '_' or '-'"
        )
    return campaign


def _attribute(value: str) -> str:
    return '"' + htmllib.escape(value, quote=True) + '"'


def _render(
    doc: _Document,
    *,
    recipient: str,
    campaign: str,
    base: str,
    allowed: Collection[str],
    links: LinkSigner,
    techs: EmailTechnologies,
    hash_subject: Callable[[str], str],
    ttl: int,
    jurisdiction: str | None,
) -> TaggedEmail:
    subject_hash = hash_subject(recipient)  # also checks the recipient reference

    def permits(tech: TrackingTechnology | None) -> bool:
        return (
            tech is not None
            and decide_hit(tech, allowed, required=techs.required).outcome == "full"
        )

    track_links, add_pixel = permits(techs.link), permits(techs.pixel)
    ours = base + "/t/"
    edits: list[tuple[int, int, str]] = []
    for link in doc.links:
        if link.url.startswith(ours):
            continue  # already a troth link (tagged twice): leave it
        new: str | None
        if track_links and techs.link is not None:
            token = links.sign(
                link.url,
                tech=techs.link.id,
                campaign=campaign,
                recipient=subject_hash,
                ttl=ttl,
                jurisdiction=jurisdiction,
            )
            # An overlong URL makes a token the redirect would refuse: keep the plain link.
            new = f"{base}/t/l/{token}" if len(token) <= MAX_TOKEN else None
        else:
            new = strip_tracking_params(link.url)
        if new is not None:
            edits.append((link.start, link.end, _attribute(new)))
    rewritten = len(edits)
    pixel = (
        add_pixel
        and techs.pixel is not None
        and not any(src.startswith(ours + "p/") for src in doc.images)
    )
    if pixel and techs.pixel is not None:
        token = links.sign(
            OPEN_URL,
            tech=techs.pixel.id,
            campaign=campaign,
            recipient=subject_hash,
            ttl=ttl,
            jurisdiction=jurisdiction,
        )
        src = f"{base}/t/p/{quote(techs.pixel.id)}.gif?k=open&c={campaign}&m={quote(token)}"
        tag = f'<img src={_attribute(src)} width="1" height="1" alt="" style="display:none">'
        edits.append((doc.pixel_at, doc.pixel_at, tag))
        edits.sort(key=lambda e: e[0])
    out: list[str] = []
    position = 0
    for start, end, text in edits:
        out += [doc.html[position:start], text]
        position = end
    out.append(doc.html[position:])
    return TaggedEmail("".join(out), track_links or add_pixel, rewritten, pixel)


def tag_email(
    html: str,
    *,
    recipient: str,
    campaign: str,
    base_url: str,
    allowed: Collection[str],
    links: LinkSigner,
    policy: Policy,
    hash_subject: Callable[[str], str],
    ttl: int = DEFAULT_TTL,
    jurisdiction: str | None = None,
) -> TaggedEmail:
    """``html`` for ``recipient``, who allows the consent categories ``allowed`` now.

    ``base_url``: where troth's ``/t/`` endpoints are reachable. ``hash_subject``: the
    ledger's keyed hash (it also rejects a malformed recipient reference). TrackingError
    for a bad campaign or base URL, a policy without e-mail technologies or an HTML over
    :data:`MAX_HTML_BYTES`; ConsentError for a malformed recipient. ``jurisdiction``: the
    one ``allowed`` was judged under, signed into the tokens of the tracking links and the
    open pixel so that a click and an open are judged the same way (None: the policy's
    default)."""
    return tag_batch(
        html,
        recipients=[recipient],
        campaign=campaign,
        base_url=base_url,
        allowed=lambda _recipient: allowed,
        links=links,
        policy=policy,
        hash_subject=hash_subject,
        ttl=ttl,
        jurisdiction=jurisdiction,
    )[recipient]


def tag_batch(
    html: str,
    *,
    recipients: Iterable[str],
    campaign: str,
    base_url: str,
    allowed: Callable[[str], Collection[str]],
    links: LinkSigner,
    policy: Policy,
    hash_subject: Callable[[str], str],
    ttl: int = DEFAULT_TTL,
    jurisdiction: str | None = None,
) -> dict[str, TaggedEmail]:
    """:func:`tag_email` for many recipients, reading the HTML once. ``allowed(recipient)``
    gives each recipient's allowed consent categories. Answers by recipient, in order."""
    campaign = _campaign(campaign)
    base = _base(base_url)
    techs = email_technologies(policy)
    if jurisdiction is not None and jurisdiction not in {j.id for j in policy.jurisdictions}:
        raise TrackingError(f"jurisdiction: '{jurisdiction[:64]}' is not declared by the policy")
    doc = _read(html)
    tagged: dict[str, TaggedEmail] = {}
    for recipient in recipients:
        if recipient in tagged:
            continue
        tagged[recipient] = _render(
            doc,
            recipient=recipient,
            campaign=campaign,
            base=base,
            allowed=allowed(recipient),
            links=links,
            techs=techs,
            hash_subject=hash_subject,
            ttl=ttl,
            jurisdiction=jurisdiction,
        )
    return tagged
