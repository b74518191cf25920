"""Request mail through a real SMTP conversation (a minimal server on a local socket), and
the outbox's file modes."""

from __future__ import annotations

import email
import email.policy
import socketserver
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rights.lifecycle_support import lifecycle
from troth.rights.mailer import OutboxMailer, SmtpMailer, make_mailer
from troth.rights.requests_errors import RequestError


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to accept a message: no TLS, no auth."""

    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        self.wfile.write(b"220 test ESMTP\r\n")
        data: list[bytes] = []
        in_data = False
        while line := self.rfile.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    server.messages.append(b"".join(data))
                    self.wfile.write(b"250 queued\r\n")
                else:
                    data.append(line[1:] if line.startswith(b"..") else line)
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.wfile.write(b"250-test\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                if verb == b"RCPT":
                    server.recipients.append(line.decode().strip())
                self.wfile.write(b"250 ok\r\n" if not server.refuse else b"550 no such user\r\n")
            elif verb == b"DATA":
                in_data = True
                self.wfile.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"502 not implemented\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Smtp)
        self.messages: list[bytes] = []
        self.recipients: list[str] = []
        self.refuse = False


@pytest.fixture
def smtp() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_smtp_mailer_delivers_a_plain_text_message(smtp):
    port = smtp.server_address[1]
    mailer = make_mailer(f"smtp://127.0.0.1:{port}?tls=none", Path("unused"), "privacy@lumen.test")
    assert isinstance(mailer, SmtpMailer)
    mailer.send("alex@example.org", "Your code", "Your code: 1234 5678\n")
    (raw,) = smtp.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["From"] == "privacy@lumen.test"
    assert message["To"] == "alex@example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Your code: 1234 5678" in raw.decode()
    assert [r.upper() for r in smtp.recipients] == ["RCPT TO:<ALEX@EXAMPLE.ORG>"]


def test_smtp_refusals_are_a_503_that_does_not_quote_the_server(smtp):
    smtp.refuse = True
    mailer = SmtpMailer(f"smtp://127.0.0.1:{smtp.server_address[1]}?tls=none", "p@lumen.test")
    with pytest.raises(RequestError) as refused:
        mailer.send("alex@example.org", "Your code", "1234")
    assert refused.value.status == 503
    assert "alex" not in str(refused.value)
    closed = SmtpMailer("smtp://127.0.0.1:9?tls=none", "p@lumen.test", timeout=2)
    with pytest.raises(RequestError, match="mail: the SMTP server refused or failed"):
        closed.send("alex@example.org", "Your code", "1234")
    with pytest.raises(ValueError, match="TROTH_SMTP_URL"):
        SmtpMailer("http://mail.example", "p@lumen.test")


def test_outbox_files_are_private(tmp_path):
    outbox = tmp_path / "outbox"
    mailer = make_mailer(None, outbox, "privacy@lumen.test")
    assert isinstance(mailer, OutboxMailer)
    mailer.send("alex@example.org", "One", "first")
    mailer.send("alex@example.org", "Two", "second")
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    blocked = OutboxMailer(tmp_path / "file-not-dir" / "x", "privacy@lumen.test")
    (tmp_path / "file-not-dir").write_text("a file where the directory should be")
    with pytest.raises(RequestError, match="mail: the outbox cannot be written"):
        blocked.send("alex@example.org", "Three", "third")


def test_a_code_that_cannot_be_mailed_leaves_the_request_recorded_and_says_where_to_go(
    db_url, tmp_path
):
    with lifecycle(db_url, tmp_path, smtp_url="smtp://127.0.0.1:9?tls=none") as life:
        r = life.client.post(
            "/privacy/requests", json={"kind": "access", "email": "alex@example.org"}
        )
        assert r.status_code == 503
        detail = r.json()["detail"]
        assert detail.startswith("mail: the SMTP server refused or failed")
        assert "alex" not in detail
        request_id = detail.rsplit("/", 1)[1]
        view = life.client.get(
            f"/privacy/requests/{request_id}", headers={"Accept": "application/json"}
        )
        assert view.json()["state"] == "submitted"
        steps = life.rights().desk.get(request_id).steps
        assert [s.step for s in steps] == ["submitted", "code_sent", "mail_failed"]
