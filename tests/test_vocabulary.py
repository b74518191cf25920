"""The shipped vocabulary subset: look-ups, failure messages, data integrity, regeneration."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from troth.errors import VocabularyError
from troth.policy.vocabulary import (
    LEGAL_BASIS_ALIASES,
    TRANSFER_ALIASES,
    Term,
    vocabulary,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = resources.files("troth").joinpath("policy").joinpath("data")
GDPR = "https://w3id.org/dpv/legal/eu/gdpr#"
SHIPPED = (
    "legal_bases.json",
    "transfer_bases.json",
    "purposes.json",
    "personal_data.json",
    "countries.json",
    "fideslang.json",
    "cookies.json",
    "NOTICE-dpv.md",
    "NOTICE-open-cookie-database.md",
)
EU27 = {
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
}  # fmt: skip


# --- legal bases ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "letter"),
    [
        ("consent", "a"),
        ("contract", "b"),
        ("legal_obligation", "c"),
        ("vital_interest", "d"),
        ("public_task", "e"),
        ("legitimate_interest", "f"),
    ],
)
def test_legal_basis_alias_resolves_to_art6_letter(alias, letter):
    term = vocabulary().legal_basis(alias)
    assert term.key == f"eu-gdpr:A6-1-{letter}"
    assert term.iri == f"{GDPR}A6-1-{letter}"
    assert LEGAL_BASIS_ALIASES[alias] == term.key
    assert vocabulary().basis_kind(term) == alias


@pytest.mark.parametrize(
    "spelling",
    ["legitimate_interest", "eu-gdpr:A6-1-f", "A6-1-f", f"{GDPR}A6-1-f"],
)
def test_legal_basis_spellings_agree(spelling):
    term = vocabulary().legal_basis(spelling)
    assert term.key == "eu-gdpr:A6-1-f"
    assert term.iri == "https://w3id.org/dpv/legal/eu/gdpr#A6-1-f"
    assert term.label == "Art 6(1-f) legitimate interest"


@pytest.mark.parametrize("spelling", ["dpv:Consent", "Consent", "https://w3id.org/dpv#Consent"])
def test_dpv_core_basis_resolves(spelling):
    term = vocabulary().legal_basis(spelling)
    assert term.key == "dpv:Consent"
    assert term.iri == "https://w3id.org/dpv#Consent"


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("eu-gdpr:A6-1-f-controller", "legitimate_interest"),
        ("eu-gdpr:A6-1-f-third-party", "legitimate_interest"),
        ("eu-gdpr:A6-1-a-explicit-consent", "consent"),
        ("eu-gdpr:A6-1-b-enter-into-contract", "contract"),
        ("eu-gdpr:A6-1-e-official-authority", "public_task"),
        ("eu-gdpr:A6-1-d-data-subject", "vital_interest"),
        ("dpv:LegalObligation", "legal_obligation"),
        ("dpv:PublicInterest", "public_task"),
        ("eu-gdpr:A9-2-a", "consent"),
        ("eu-gdpr:A9-2-c", "vital_interest"),
        ("eu-gdpr:A9-2-d", "legitimate_interest"),
        ("eu-gdpr:A9-2-b", None),
        ("eu-gdpr:A9-2-g", None),  # public interest, but not an Art. 6(1) basis here
        ("eu-gdpr:A9-2-h", None),
    ],
)
def test_basis_kind(key, kind):
    v = vocabulary()
    assert v.basis_kind(v.legal_basis(key)) == kind


def test_basis_kind_follows_broader_links_of_a_foreign_term():
    term = Term(key="x:Custom", iri="https://example.org/custom", label="Custom",
                broader=("eu-gdpr:A6-1-f-controller",))  # fmt: skip
    assert vocabulary().basis_kind(term) == "legitimate_interest"
    assert vocabulary().basis_kind(dataclasses.replace(term, broader=())) is None


def test_basis_kind_of_transfer_basis_is_none():
    v = vocabulary()
    assert v.basis_kind(v.transfer_basis("scc")) is None


def test_broader_links_stay_inside_the_subset():
    v = vocabulary()
    term = v.legal_basis("eu-gdpr:A6-1-f-controller")
    assert set(term.broader) == {"eu-gdpr:A6-1-f", "dpv:LegitimateInterest"}
    for key in term.broader:
        assert v.legal_basis(key).key == key


def test_unknown_legal_basis_suggests_alias():
    with pytest.raises(VocabularyError) as info:
        vocabulary().legal_basis("concent")
    message = str(info.value)
    assert message.startswith("unknown legal basis 'concent' (did you mean 'consent'")
    assert message.endswith("?)")
    assert "\n" not in message


def test_unknown_legal_basis_without_suggestion():
    with pytest.raises(VocabularyError, match=r"^unknown legal basis 'zzzzzzzz'$"):
        vocabulary().legal_basis("zzzzzzzz")


def test_error_message_stays_on_one_line():
    with pytest.raises(VocabularyError) as info:
        vocabulary().legal_basis("con\nsent")
    assert "\n" not in str(info.value)
    assert "'con\\nsent'" in str(info.value)


def test_art9_and_not_other_gdpr_articles_are_legal_bases():
    v = vocabulary()
    assert v.legal_basis("A9-2-j").label.startswith("Art 9(2-j)")
    for not_a_basis in ("A6-1-a-Denied", "A13", "A46-2-c"):
        with pytest.raises(VocabularyError):
            v.legal_basis(not_a_basis)


def test_legal_basis_is_case_sensitive():
    with pytest.raises(VocabularyError, match="did you mean 'consent'"):
        vocabulary().legal_basis("CONSENT")


# --- transfer bases ------------------------------------------------------------------------


@pytest.mark.parametrize(("alias", "key"), sorted(TRANSFER_ALIASES.items()))
def test_transfer_alias(alias, key):
    term = vocabulary().transfer_basis(alias)
    assert term.key == key
    assert term.iri == GDPR + key.removeprefix("eu-gdpr:")


def test_transfer_alias_targets():
    assert TRANSFER_ALIASES["scc"] == "eu-gdpr:A46-2-c"
    assert TRANSFER_ALIASES["bcr"] == "eu-gdpr:A46-2-b"
    assert TRANSFER_ALIASES["adequacy"] == "eu-gdpr:A45-3"
    assert TRANSFER_ALIASES["derogation_vital_interests"] == "eu-gdpr:A49-1-f"


@pytest.mark.parametrize("spelling", ["scc", "A46-2-c", "eu-gdpr:A46-2-c", f"{GDPR}A46-2-c"])
def test_transfer_spellings_agree(spelling):
    assert vocabulary().transfer_basis(spelling).key == "eu-gdpr:A46-2-c"


def test_transfer_basis_rejects_legal_basis():
    with pytest.raises(VocabularyError, match=r"^unknown transfer basis 'consent'"):
        vocabulary().transfer_basis("consent")


def test_transfer_basis_includes_other_chapter_v_bases():
    v = vocabulary()
    assert v.transfer_basis("A46-2-d").label.startswith("Art 46(2-d)")
    assert v.transfer_basis("A49-2").key == "eu-gdpr:A49-2"


# --- purposes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    ["dpv:ServiceProvision", "ServiceProvision", "https://w3id.org/dpv#ServiceProvision"],
)
def test_purpose_spellings(spelling):
    term = vocabulary().purpose(spelling)
    assert term.key == "dpv:ServiceProvision"
    assert term.broader == ("dpv:ServiceManagement",)


@pytest.mark.parametrize(
    ("data_use", "key"),
    [
        ("essential.service", "dpv:ServiceProvision"),
        ("essential.fraud_detection", "dpv:FraudPreventionAndDetection"),
        ("marketing.advertising", "dpv:Advertising"),
        ("marketing.advertising.profiling", "dpv:PersonalisedAdvertising"),
        ("marketing.communications.email", "dpv:DirectMarketing"),
        ("analytics", "dpv:ServiceUsageAnalytics"),
        ("improve", "dpv:ServiceOptimisation"),
        ("legal", "dpv:LegalCompliance"),
    ],
)
def test_fideslang_data_use(data_use, key):
    assert vocabulary().purpose(data_use).key == key


def test_unknown_purpose():
    with pytest.raises(VocabularyError, match=r"^unknown purpose 'marketting' \(did you mean"):
        vocabulary().purpose("marketting")


def test_purpose_does_not_accept_personal_data():
    with pytest.raises(VocabularyError):
        vocabulary().purpose("pd:EmailAddress")


def test_purposes_subset_is_complete():
    purposes = json.loads(DATA.joinpath("purposes.json").read_text(encoding="utf-8"))
    assert len(purposes) >= 121
    assert all(key.startswith("dpv:") for key in purposes)
    for entry in purposes.values():
        assert set(entry["broader"]) <= set(purposes)


# --- personal data -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("user.device.ip_address", "pd:IPAddress"),
        ("user.contact.email", "pd:EmailAddress"),
        ("user.contact.phone_number", "pd:TelephoneNumber"),
        ("user.financial.bank_account", "pd:BankAccount"),
        ("user", "dpv:PersonalData"),
        ("pd:EmailAddress", "pd:EmailAddress"),
        ("EmailAddress", "pd:EmailAddress"),
        ("https://w3id.org/dpv/pd#EmailAddress", "pd:EmailAddress"),
        ("dpv:SpecialCategoryPersonalData", "dpv:SpecialCategoryPersonalData"),
    ],
)
def test_personal_data(spelling, key):
    assert vocabulary().personal_data(spelling).key == key


def test_ip_address_term():
    term = vocabulary().personal_data("user.device.ip_address")
    assert term.iri == "https://w3id.org/dpv/pd#IPAddress"
    assert term.label == "IP Address"


def test_personal_data_prefix_match_needs_a_mapped_ancestor():
    with pytest.raises(VocabularyError, match=r"^unknown personal data category 'account\.email'"):
        vocabulary().personal_data("account.email")


def test_unknown_personal_data_suggests():
    with pytest.raises(VocabularyError, match="did you mean 'EmailAddress'"):
        vocabulary().personal_data("EmailAdress")


def test_every_fideslang_target_resolves():
    mapping = json.loads(DATA.joinpath("fideslang.json").read_text(encoding="utf-8"))
    v = vocabulary()
    assert len(mapping["data_categories"]) >= 40
    assert len(mapping["data_uses"]) >= 15
    for dotted, key in mapping["data_categories"].items():
        assert v.personal_data(dotted).key == key
    for dotted, key in mapping["data_uses"].items():
        assert v.purpose(dotted).key == key


# --- countries -----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["DE", "de", "De", "https://w3id.org/dpv/loc#DE"])
def test_country(spelling):
    term = vocabulary().country(spelling)
    assert term.key == "DE"
    assert term.label == "Germany"


def test_eu_members():
    members = vocabulary().members("EU")
    assert members == EU27
    assert "DE" in members
    assert "GB" not in members
    assert "CH" not in members


def test_eea_members():
    assert vocabulary().members("eea") == EU27 | {"IS", "LI", "NO"}


def test_dated_unions():
    v = vocabulary()
    assert v.members("EU28") == EU27 | {"GB"}
    assert v.country("EU27").broader == ("EU",)


def test_country_is_its_own_member():
    assert vocabulary().members("ch") == frozenset({"CH"})


def test_unknown_country():
    with pytest.raises(VocabularyError, match=r"^unknown country 'XX'$"):
        vocabulary().country("XX")
    with pytest.raises(VocabularyError, match=r"^unknown country 'XX'$"):
        vocabulary().members("XX")


def test_country_name_suggests_code():
    with pytest.raises(VocabularyError, match=r"^unknown country 'Germany' \(did you mean 'DE'"):
        vocabulary().country("Germany")


# --- cookies -------------------------------------------------------------------------------


def test_cookie_exact():
    entry = vocabulary().cookie("_ga")
    assert entry is not None
    assert (entry.platform, entry.category, entry.wildcard) == (
        "Google Analytics",
        "Analytics",
        False,
    )


def test_cookie_wildcard():
    entry = vocabulary().cookie("_ga_ABC123")
    assert entry is not None
    assert entry.name == "_ga_"
    assert entry.wildcard
    assert entry.category == "Analytics"


def test_cookie_longest_wildcard_wins():
    entry = vocabulary().cookie("_gat_gtag_UA_12345_1")
    assert entry is not None
    assert entry.name == "_gat_gtag_"  # not the shorter wildcard "_gat"


def test_cookie_non_wildcard_is_not_a_prefix():
    # "_ga" is known but not a wildcard entry, so "_gaXYZ" must not match it.
    assert vocabulary().cookie("_gaXYZ") is None


def test_unknown_cookie():
    assert vocabulary().cookie("certainly-not-a-known-cookie") is None
    assert vocabulary().cookie("") is None


# --- suggestions and the singleton ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "key", "expected"),
    [
        ("legal_basis", "legitimate_intrest", "legitimate_interest"),
        ("transfer_basis", "sccs", "scc"),
        ("purpose", "ServiceProvison", "ServiceProvision"),
        ("personal_data", "user.contact.emial", "user.contact.email"),
        ("country", "DEU", "DE"),
    ],
)
def test_suggestions(kind, key, expected):
    found = vocabulary().suggestions(kind, key)
    assert expected in found
    assert len(found) <= 3


def test_no_suggestions_for_nonsense():
    assert vocabulary().suggestions("purpose", "qqqqqqqqqqqq") == []


def test_vocabulary_is_a_singleton():
    assert vocabulary() is vocabulary()


def test_term_is_immutable():
    term = vocabulary().country("DE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        term.key = "FR"  # type: ignore[misc]


# --- shipped data --------------------------------------------------------------------------


def test_shipped_data_is_small():
    total = sum(len(DATA.joinpath(name).read_bytes()) for name in SHIPPED)
    assert total < 400_000


def test_no_prose_definitions_shipped():
    for name in SHIPPED:
        if name.endswith(".json"):
            assert '"definition"' not in DATA.joinpath(name).read_text(encoding="utf-8")
    assert "ID used to identify users" not in DATA.joinpath("cookies.json").read_text("utf-8")


def test_dpv_notice():
    text = DATA.joinpath("NOTICE-dpv.md").read_text(encoding="utf-8")
    assert "W3C Software and Document" in text
    assert "World Wide Web Consortium" in text
    assert "definitions omitted" in text
    assert "f01a55c3c0983e35cdfdf80593ece3353faba7b8" in text


def test_cookie_notice():
    text = DATA.joinpath("NOTICE-open-cookie-database.md").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "0ee5a17fe1cb002943f89370d24fc26a4226061c" in text


def test_regeneration_is_byte_identical(tmp_path):
    if not (SHARED_DATA / "dpv-2.3").is_dir():
        pytest.skip(f"source data not available at {SHARED_DATA}")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_vocabulary.py"),
            "--source",
            str(SHARED_DATA),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SHIPPED)
    for name in SHIPPED:
        assert (tmp_path / name).read_bytes() == DATA.joinpath(name).read_bytes(), name
