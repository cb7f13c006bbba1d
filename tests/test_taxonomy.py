import pytest

from skilltag.taxonomy import ENV_VAR, TaxonomyError, load_taxonomy

from conftest import ESCO_CSV

HEADER = (
    "conceptType,conceptUri,skillType,reuseLevel,preferredLabel,altLabels,hiddenLabels,status,modifiedDate,"
    "scopeNote,definition,inScheme,description\n"
)


def test_full_esco_export_parses():
    tax = load_taxonomy(ESCO_CSV)
    assert len(tax) == 13891
    assert tax.version == "v1.1.0"
    assert len(set(tax.labels)) == 13891
    musical = tax.skills[tax.by_uri()["http://data.europa.eu/esco/skill/0005c151-5b5a-4a66-8aac-60e734beb1ab"]]
    assert musical.label == "manage musical staff"
    # altLabels are newline-separated in one quoted field; the preferred label is not repeated.
    assert "manage staff of music" in musical.alt_labels
    assert "direct musical staff" in musical.alt_labels
    assert "manage musical staff" not in musical.alt_labels
    assert musical.description.startswith("Assign and manage staff tasks")


def test_missing_description_and_alt_labels(tmp_path):
    p = tmp_path / "skills_en.csv"
    p.write_text(
        HEADER
        + 'KnowledgeSkillCompetence,http://x/1,knowledge,,SQL,,,released,,,,,\n'
        + 'KnowledgeSkillCompetence,http://x/2,skill/competence,cross-sector,teamwork,"work in teams\n\n'
        + 'collaborate ",,released,,,,,"Work well\n with others."\n'
    )
    tax = load_taxonomy(p)
    assert [s.label for s in tax.skills] == ["SQL", "teamwork"]
    assert tax.skills[0].alt_labels == () and tax.skills[0].description == ""
    assert tax.skills[1].alt_labels == ("work in teams", "collaborate")
    assert tax.skills[1].description == "Work well with others."
    assert tax.version == "unknown"


def test_missing_file_says_where_to_get_esco(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(TaxonomyError, match=ENV_VAR) as e:
        load_taxonomy(None)
    assert "esco.ec.europa.eu" in str(e.value)
    with pytest.raises(TaxonomyError, match="not found"):
        load_taxonomy(tmp_path / "nope.csv")


def test_env_var_is_used(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(ESCO_CSV))
    assert len(load_taxonomy()) == 13891


@pytest.mark.parametrize(
    "body, message",
    [
        ("a,b,c\n1,2,3\n", "missing column"),
        (HEADER + "KnowledgeSkillCompetence,http://x/1,knowledge\n", "line 2 has the wrong number of fields"),
        (HEADER + "KnowledgeSkillCompetence,,knowledge,,SQL,,,released,,,,,\n", "line 2 has an empty conceptUri"),
        (
            HEADER + "K,http://x/1,k,,SQL,,,r,,,,,\nK,http://x/1,k,,Java,,,r,,,,,\n",
            "line 3 repeats conceptUri",
        ),
        (HEADER, "no skills"),
        ("conceptUri,preferredLabel,altLabels,description,preferredLabel\nhttp://x/1,SQL,,,zzz\n",
         "preferredLabel appear more than once"),
    ],
)
def test_malformed_file_names_the_row(tmp_path, body, message):
    p = tmp_path / "skills_en.csv"
    p.write_text(body)
    with pytest.raises(TaxonomyError, match=message):
        load_taxonomy(p)


def test_not_utf8(tmp_path):
    p = tmp_path / "skills_en.csv"
    p.write_bytes(HEADER.encode() + b"K,http://x/1,k,,caf\xe9,,,r,,,,,\n")
    with pytest.raises(TaxonomyError, match="not UTF-8"):
        load_taxonomy(p)


def test_a_description_longer_than_the_csv_modules_default_field_cap(tmp_path):
    p = tmp_path / "skills_en.csv"
    p.write_text(HEADER + "K,http://x/1,k,,SQL,,,r,,,,," + "d" * 200_000 + "\n")
    assert len(load_taxonomy(p).skills[0].description) == 200_000
