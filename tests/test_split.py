from skilltag.split import clean_text, split_sentences


def texts(text, **kw):
    return [s.text for s in split_sentences(text, **kw)[0]]


def test_bullets_and_newlines_split_before_sentences():
    ad = "Requirements:\n• Python and SQL\n• Docker · Kubernetes\n- Team player\n* Fluent English\n2) Driving licence"
    assert texts(ad) == [
        "Python and SQL", "Docker", "Kubernetes", "Team player", "Fluent English", "Driving licence",
    ]


def test_abbreviations_do_not_end_sentences():
    ad = "Experience with e.g. Docker is a plus. You report to Dr. Smith in the U.S. office. Apply today!"
    assert texts(ad) == [
        "Experience with e.g. Docker is a plus.",
        "You report to Dr. Smith in the U.S. office.",
        "Apply today!",
    ]


def test_html_breaks_entities_and_semicolon_lists():
    ad = "<p>We offer</p><ul><li>Salary &amp; bonus</li><li>Remote work</li></ul>Duties: plan budgets; coach staff"
    assert texts(ad) == ["We offer", "Salary & bonus", "Remote work", "Duties: plan budgets", "coach staff"]


def test_fragments_without_letters_and_headers_are_dropped():
    assert texts("Salary: 40.000\n12345\n---\n***\n§ 4.2\nJava") == ["Salary: 40.000", "Java"]
    ad = "Job description:\nWhat you will do in your first months at our company:\nSkills: SQL"
    assert texts(ad) == ["What you will do in your first months at our company:", "Skills: SQL"]


def test_offsets_point_into_cleaned_text():
    ad = "<b>Title</b>\n  • Build  APIs in Go.  Review code.\n"
    cleaned = clean_text(ad)
    for s in split_sentences(ad)[0]:
        assert " ".join(cleaned[s.start : s.end].split()) == s.text


def test_absurd_lengths_are_capped_not_lost():
    word = "kubernetes "
    sentences, truncated = split_sentences(word * 200, max_chars=100)
    assert not truncated
    assert all(len(s.text) <= 100 for s in sentences)
    assert sum(s.text.count("kubernetes") for s in sentences) == 200
    many, truncated = split_sentences("\n".join(f"skill {i}" for i in range(50)), max_sentences=10)
    assert len(many) == 10 and truncated


def test_an_ad_with_exactly_max_sentences_is_not_truncated():
    exact, truncated = split_sentences("\n".join(f"skill {i}" for i in range(10)), max_sentences=10)
    assert len(exact) == 10 and not truncated


def test_a_runaway_record_is_read_only_up_to_its_bound():
    sentences, truncated = split_sentences("Manage a team. " * 100, max_chars=50, max_sentences=5)
    assert len(sentences) == 5 and truncated
    short, cut = split_sentences("Manage a team. " + " " * 600, max_chars=50, max_sentences=5)
    assert [s.text for s in short] == ["Manage a team."] and cut, "the text ran past 2 * 5 * 50 characters"
