"""Parsing LLM answers into sentences, and screening them."""

from __future__ import annotations

import pytest

from skilltag.generate.parse import MAX_CHARS, normalise, reject_reason, screen, split_answer

GOOD = ["You will manage the warehouse team.", "Experience with forklifts is required."]


@pytest.mark.parametrize(
    "answer",
    [
        '["You will manage the warehouse team.", "Experience with forklifts is required."]',
        'Sure! Here they are:\n```json\n[\n "You will manage the warehouse team.",\n'
        ' "Experience with forklifts is required."\n]\n```\nGood luck!',
        '{"sentences": ["You will manage the warehouse team.", "Experience with forklifts is required."]}',
        "1. You will manage the warehouse team.\n2) Experience with forklifts is required.",
        '- "You will manage the warehouse team."\n* Experience with forklifts is required.',
        "• You will manage the warehouse team.\n\n• Experience with forklifts is required.",
    ],
    ids=["json", "fenced", "object", "numbered", "bulleted-quoted", "bullets"],
)
def test_split_answer_forms(answer):
    assert split_answer(answer) == GOOD


def test_inline_numbered_items_are_split():
    answer = "Sentences: 1. You will manage the warehouse team, 2. Experience with forklifts is required."
    assert split_answer(answer) == ["Sentences:", "You will manage the warehouse team", GOOD[1]]


def test_prose_is_split_into_sentences():
    answer = "You will manage the warehouse team. Experience with forklifts is required."
    assert split_answer(answer) == GOOD


def test_numbers_inside_a_sentence_do_not_split_it():
    answer = "- You need 3. 5 years of experience with forklifts and 2. tools"
    assert split_answer(answer) == ["You need 3. 5 years of experience with forklifts and 2. tools"]


def test_array_cut_off_by_max_tokens_keeps_complete_strings():
    answer = '["You will manage the warehouse team.", "Experience with \\"heavy\\" forklifts is req'
    assert split_answer(answer) == ["You will manage the warehouse team."]


def test_non_string_items_are_dropped():
    assert split_answer('["You will manage the warehouse team.", 3, null]') == [GOOD[0]]


@pytest.mark.parametrize(
    "sentence, reason",
    [
        ("", "empty"),
        ("Teamwork.", "too_short"),
        ("word " * 61 + "and more.", "too_long"),
        ("a" * (MAX_CHARS + 1), "too_long"),
        ("Here are ten sentences for this skill:", "preamble"),
        ("Skill: supervise correctional procedures and staff.", "prompt_echo"),
        ("Description of skill: Supervise the operations of a prison.", "prompt_echo"),
        ("| Sentence 1 | Conduct outreach activities in social work |", "markup"),
        ("## Sentences for the job advert", "markup"),
        ('Statement": "Supervise corrections and ensure compliance with the law,', "markup"),
        ('"Description" : "In this capacity, one can assist citizens."}', "markup"),
        ("Here is the JSON array of 8 strings with each sentence: [", "markup"),
        ('"This capacity enables individuals to take control of their destinies.', "markup"),
        ('You will apply the skill "identify available services" daily.', None),
        ("Sie werden das Team leiten und fuhren.", "not_english"),
        ("Вы будете управлять командой и бюджетом компании.", "not_english"),
        ("El candidato será responsable de la gestión del equipo.", "not_english"),
        ("You will manage the warehouse team.", None),
        ("Proficiency in SQL and Python is required.", None),
    ],
)
def test_reject_reason(sentence, reason):
    assert reject_reason(sentence) == reason


def test_screen_drops_duplicates_by_normalised_form_and_counts_reasons():
    out = screen(
        [
            "You will manage the warehouse team.",
            "you will  manage the Warehouse team!",
            "",
            "Sie werden das Team leiten und fuhren.",
            "Experience with forklifts is required.",
        ]
    )
    assert out.kept == GOOD
    assert out.rejected == {"duplicate": 1, "empty": 1, "not_english": 1}


def test_screen_remembers_earlier_asks_through_seen():
    seen = {normalise(GOOD[0])}
    out = screen(GOOD, seen)
    assert out.kept == [GOOD[1]]
    assert out.rejected == {"duplicate": 1}
    assert normalise(GOOD[1]) in seen


def test_screen_collapses_whitespace():
    assert screen(["You  will\nmanage the   team today."]).kept == ["You will manage the team today."]
