"""Choosing the skills of a run."""

from __future__ import annotations

import pytest

from skilltag.generate.engine import GenerateError
from skilltag.generate.select import read_wanted, select_skills
from skilltag.taxonomy import Skill

SKILLS = [Skill(f"uri:{i}", f"Skill {i}", (), "", "", "") for i in range(6)]


def test_all_then_limit():
    assert select_skills(SKILLS) == SKILLS
    assert select_skills(SKILLS, limit=2) == SKILLS[:2]
    assert select_skills(SKILLS, limit=0) == []


def test_wanted_keeps_file_order_ignores_case_and_repeats():
    picked = select_skills(SKILLS, ["uri:4", "skill 1", "SKILL 4", "Skill 2"], limit=2)
    assert picked == [SKILLS[4], SKILLS[1]]


def test_unknown_names_are_listed():
    with pytest.raises(GenerateError, match=r"2 skill\(s\) not in the taxonomy: 'nope', 'uri:99'"):
        select_skills(SKILLS, ["nope", "uri:1", "uri:99"])


def test_read_wanted_skips_blanks_and_comments(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("\ufeffuri:1\n\n  # note\n  Skill 2  \n")
    assert read_wanted(path) == ["uri:1", "Skill 2"]


def test_unreadable_file_is_a_clear_error(tmp_path):
    with pytest.raises(GenerateError, match="cannot read --skills file"):
        read_wanted(tmp_path / "missing.txt")


def test_a_file_that_names_no_skill_is_a_clear_error(tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("# only a comment\n\n")
    with pytest.raises(GenerateError, match="names no skill"):
        read_wanted(path)
