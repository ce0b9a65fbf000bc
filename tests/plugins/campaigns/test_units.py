"""Pure parts: send windows on a fake clock, jittered gaps, rendering, keywords."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from guiche_campaigns.content import Content, render, variables_for
from guiche_campaigns.optout import is_opt_out
from guiche_campaigns.pacing import SendWindow, gap_seconds, in_window, next_opening
from pydantic import ValidationError

SP = "America/Sao_Paulo"  # UTC-3, no daylight saving time since 2019
WEEKDAYS = SendWindow(days=["Mon", "tue", "wed", "thu", "fri"], start="09:00", end="18:00")


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (utc(2026, 12, 7, 12, 0), True),  # Monday 09:00 local: opens
        (utc(2026, 12, 7, 11, 59), False),  # Monday 08:59
        (utc(2026, 12, 7, 20, 59), True),  # Monday 17:59
        (utc(2026, 12, 7, 21, 0), False),  # Monday 18:00: closed
        (utc(2026, 12, 5, 15, 0), False),  # Saturday noon
        (utc(2026, 12, 8, 1, 0), False),  # Monday 22:00 local, Tuesday in UTC
    ],
)
def test_the_window_is_read_in_the_company_time_zone(now: dt.datetime, inside: bool) -> None:
    assert in_window(WEEKDAYS, now, SP) is inside
    assert in_window(None, now, SP) is True


def test_next_opening_skips_the_weekend() -> None:
    saturday = utc(2026, 12, 5, 15, 0)
    assert next_opening(WEEKDAYS, saturday, SP) == utc(2026, 12, 7, 12, 0)
    monday_inside = utc(2026, 12, 7, 13, 0)
    assert next_opening(WEEKDAYS, monday_inside, SP) == monday_inside


def test_a_window_must_make_sense() -> None:
    with pytest.raises(ValidationError):
        SendWindow(days=["funday"])
    with pytest.raises(ValidationError):
        SendWindow(start="18:00", end="09:00")


def test_jittered_gaps_keep_the_mean_and_stay_in_bounds() -> None:
    rng = random.Random(7)
    gaps = [gap_seconds(60, 0.3, rng) for _ in range(5000)]
    assert all(0.7 <= gap <= 1.3 for gap in gaps)
    assert abs(sum(gaps) / len(gaps) - 1.0) < 0.02
    assert gap_seconds(120, 0) == 0.5


def test_rendering_fills_variables_everywhere() -> None:
    values = variables_for("Ana Souza", "+5511999990000", {"cupom": "X10"})
    assert values["first_name"] == "Ana"
    content = Content(type="text", text="Oi {{ first_name }}, use {{cupom}}{{unknown}}")
    assert render(content.message(), values) == {"type": "text", "text": "Oi Ana, use X10"}
    template = {"components": [{"parameters": [{"value": "{{name}}"}, 3]}]}
    assert render(template, values) == {"components": [{"parameters": [{"value": "Ana Souza"}, 3]}]}
    with pytest.raises(ValidationError):
        Content(type="template")
    with pytest.raises(ValidationError):
        Content(type="text")


@pytest.mark.parametrize("body", ["SAIR", "sair", " Sair! ", "parar.", "STOP", "cancelár"])
def test_keywords_match_whole_messages_in_any_case_or_accent(body: str) -> None:
    assert is_opt_out(body, ["SAIR", "PARAR", "STOP", "CANCELAR"])


@pytest.mark.parametrize("body", ["quero sair", "sair agora", "", "stopped"])
def test_other_messages_are_not_opt_outs(body: str) -> None:
    assert not is_opt_out(body, ["SAIR", "PARAR", "STOP", "CANCELAR"])
