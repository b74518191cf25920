"""What the request portal, the status page and the request e-mails say, in each language
troth ships for them (English and German); other languages fall back to English."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LANGUAGES", "texts"]

_EN: dict[str, str] = {
    "portal.title": "Your privacy rights",
    "portal.intro": (
        "Ask {service} for a copy of the personal data it holds about you, to correct or "
        "erase it, or to restrict or object to its use. We answer within one month of "
        "receiving your request, and tell you if we need longer (at most two more months) "
        "and why."
    ),
    "portal.not_sent": "Your request was not sent.",
    "portal.recorded": "Your request is recorded, but we could not e-mail you the code.",
    "portal.legend": "What would you like us to do?",
    "kind.access": "Give me a copy of my data",
    "kind.portability": "Give me my data in a machine-readable form, to take elsewhere",
    "kind.erasure": "Erase my data",
    "kind.rectification": "Correct my data",
    "kind.restriction": "Restrict the use of my data",
    "kind.objection": "Stop using my data for a purpose (objection)",
    "portal.email": "Your e-mail address",
    "portal.email_hint": (
        "We send a code to this address to check that it is yours, and only use it for "
        "this request."
    ),
    "portal.scope": "For restriction or objection: which use?",
    "portal.scope_all": "Every use that allows it",
    "portal.correction": "For a correction: what to correct",
    "portal.target": "What is wrong",
    "portal.choose": "Choose…",
    "portal.target_hint": "As named in your copy of your data (store.table.field).",
    "portal.value": "Correct value",
    "portal.send": "Send request",
    "name.access": "access",
    "name.portability": "portability",
    "name.erasure": "erasure",
    "name.rectification": "rectification",
    "name.restriction": "restriction",
    "name.objection": "objection",
    "state.submitted": "waiting for your code",
    "state.verified": "verified, waiting for review",
    "state.approved": "approved",
    "state.executing": "in progress",
    "state.completed": "done",
    "state.rejected": "rejected",
    "status.title": "Your {kind} request",
    "status.reference": "Reference",
    "status.state": "State",
    "status.received": "Received",
    "status.answer_by": "We answer by",
    "status.extended": "extended",
    "status.use": "Use",
    "status.rejected_why": "Why we cannot act",
    "status.kept": "Kept",
    "status.confirm_title": "Confirm it is you",
    "status.confirm_text": "We sent a code to the e-mail address you gave. Enter it here.",
    "status.code": "Code",
    "status.confirm": "Confirm",
    "status.new_code": "Send me a new code",
    "status.working": "We are working on your request. We will e-mail you when it is done.",
    "status.review": (
        "We are working on your request; a privacy officer reviews it first. We will "
        "e-mail you when it is done."
    ),
    "status.done": "Your request was carried out on {day}.",
    "status.download": "We e-mailed you a download link; it works once.",
    "mail.code.subject": "Your code for your privacy request to {service}",
    "mail.code.body": (
        "Someone, hopefully you, asked {service} to act on the personal data held about "
        "this e-mail address ({kind} request).\n\n"
        "Your code: {code}\n\n"
        "Enter it at {url} within {minutes} minutes. If you did not ask for this, ignore "
        "this e-mail: nothing happens without the code.\n"
    ),
    "mail.extended.subject": "Your privacy request to {service} needs more time",
    "mail.extended.body": (
        "We need more time to answer your {kind} request. We will answer by {day}.\n\n"
        "Why: {reason}\n\nStatus: {url}\n"
    ),
    "mail.rejected.subject": "Your privacy request to {service}",
    "mail.rejected.body": (
        "We cannot act on your {kind} request.\n\nWhy: {reason}\n\n"
        "You may lodge a complaint with a supervisory authority.\n"
    ),
    "mail.package.subject": "Your data from {service}",
    "mail.package.body": (
        "Your {kind} request is done. Download your data (a ZIP file with JSON and CSV "
        "files and a README) here:\n\n{link}\n\nThe link works once, for {hours} hours.\n"
    ),
    "mail.done.subject": "Your privacy request to {service} is done",
    "mail.done.body": "We have carried out your {kind} request.\n\n{note}\n\nStatus: {url}\n",
    "note.done": "Done.",
    "note.held": "Kept because of a legal hold: {reasons}",
}

_DE: dict[str, str] = {
    "portal.title": "Ihre Datenschutzrechte",
    "portal.intro": (
        "Bitten Sie {service} um eine Kopie der personenbezogenen Daten, die wir über Sie "
        "speichern, darum, sie zu berichtigen oder zu löschen, oder ihre Verarbeitung "
        "einzuschränken oder ihr zu widersprechen. Wir antworten innerhalb eines Monats "
        "nach Eingang Ihres Antrags und sagen Ihnen, wenn wir länger brauchen (höchstens "
        "zwei weitere Monate), und warum."
    ),
    "portal.not_sent": "Ihr Antrag wurde nicht gesendet.",
    "portal.recorded": (
        "Ihr Antrag ist erfasst, aber wir konnten Ihnen den Code nicht per E-Mail senden."
    ),
    "portal.legend": "Was sollen wir tun?",
    "kind.access": "Mir eine Kopie meiner Daten geben",
    "kind.portability": "Mir meine Daten maschinenlesbar geben, um sie mitzunehmen",
    "kind.erasure": "Meine Daten löschen",
    "kind.rectification": "Meine Daten berichtigen",
    "kind.restriction": "Die Verarbeitung meiner Daten einschränken",
    "kind.objection": "Meine Daten nicht mehr für einen Zweck verwenden (Widerspruch)",
    "portal.email": "Ihre E-Mail-Adresse",
    "portal.email_hint": (
        "Wir senden einen Code an diese Adresse, um zu prüfen, dass sie Ihnen gehört, und "
        "verwenden sie nur für diesen Antrag."
    ),
    "portal.scope": "Bei Einschränkung oder Widerspruch: welche Verwendung?",
    "portal.scope_all": "Jede Verwendung, bei der das möglich ist",
    "portal.correction": "Bei einer Berichtigung: was zu berichtigen ist",
    "portal.target": "Was ist falsch",
    "portal.choose": "Bitte wählen…",
    "portal.target_hint": "So benannt wie in der Kopie Ihrer Daten (Speicher.Tabelle.Feld).",
    "portal.value": "Richtiger Wert",
    "portal.send": "Antrag senden",
    "name.access": "Auskunfts",
    "name.portability": "Datenübertragbarkeits",
    "name.erasure": "Lösch",
    "name.rectification": "Berichtigungs",
    "name.restriction": "Einschränkungs",
    "name.objection": "Widerspruchs",
    "state.submitted": "wartet auf Ihren Code",
    "state.verified": "bestätigt, wird geprüft",
    "state.approved": "genehmigt",
    "state.executing": "in Bearbeitung",
    "state.completed": "erledigt",
    "state.rejected": "abgelehnt",
    "status.title": "Ihr {kind}antrag",
    "status.reference": "Aktenzeichen",
    "status.state": "Stand",
    "status.received": "Eingegangen",
    "status.answer_by": "Wir antworten bis",
    "status.extended": "verlängert",
    "status.use": "Verwendung",
    "status.rejected_why": "Warum wir nicht handeln können",
    "status.kept": "Aufbewahrt",
    "status.confirm_title": "Bestätigen Sie, dass Sie es sind",
    "status.confirm_text": (
        "Wir haben einen Code an die angegebene E-Mail-Adresse gesendet. Geben Sie ihn hier ein."
    ),
    "status.code": "Code",
    "status.confirm": "Bestätigen",
    "status.new_code": "Neuen Code senden",
    "status.working": ("Wir bearbeiten Ihren Antrag und schreiben Ihnen, sobald er erledigt ist."),
    "status.review": (
        "Wir bearbeiten Ihren Antrag; zuerst prüft ihn eine Datenschutzbeauftragte oder ein "
        "Datenschutzbeauftragter. Wir schreiben Ihnen, sobald er erledigt ist."
    ),
    "status.done": "Ihr Antrag wurde am {day} ausgeführt.",
    "status.download": ("Wir haben Ihnen einen Download-Link geschickt; er funktioniert einmal."),
    "mail.code.subject": "Ihr Code für Ihren Datenschutzantrag an {service}",
    "mail.code.body": (
        "Jemand, hoffentlich Sie, hat {service} gebeten, mit den zu dieser E-Mail-Adresse "
        "gespeicherten personenbezogenen Daten etwas zu tun ({kind}antrag).\n\n"
        "Ihr Code: {code}\n\n"
        "Geben Sie ihn innerhalb von {minutes} Minuten unter {url} ein. Wenn Sie das nicht "
        "waren, ignorieren Sie diese E-Mail: ohne den Code geschieht nichts.\n"
    ),
    "mail.extended.subject": "Ihr Datenschutzantrag an {service} braucht mehr Zeit",
    "mail.extended.body": (
        "Wir brauchen mehr Zeit für Ihren {kind}antrag. Wir antworten bis {day}.\n\n"
        "Warum: {reason}\n\nStand: {url}\n"
    ),
    "mail.rejected.subject": "Ihr Datenschutzantrag an {service}",
    "mail.rejected.body": (
        "Wir können Ihrem {kind}antrag nicht nachkommen.\n\nWarum: {reason}\n\n"
        "Sie können sich bei einer Aufsichtsbehörde beschweren.\n"
    ),
    "mail.package.subject": "Ihre Daten von {service}",
    "mail.package.body": (
        "Ihr {kind}antrag ist erledigt. Laden Sie Ihre Daten (eine ZIP-Datei mit JSON- und "
        "CSV-Dateien und einer README) hier herunter:\n\n{link}\n\nDer Link funktioniert "
        "einmal, {hours} Stunden lang.\n"
    ),
    "mail.done.subject": "Ihr Datenschutzantrag an {service} ist erledigt",
    "mail.done.body": "Wir haben Ihren {kind}antrag ausgeführt.\n\n{note}\n\nStand: {url}\n",
    "note.done": "Erledigt.",
    "note.held": "Aufbewahrt wegen einer rechtlichen Sperre (legal hold): {reasons}",
}

LANGUAGES: Mapping[str, Mapping[str, str]] = {"en": _EN, "de": _DE}


def texts(language: str) -> Mapping[str, str]:
    """The texts in ``language``, English where troth has none in it."""
    return LANGUAGES.get(language, _EN)
