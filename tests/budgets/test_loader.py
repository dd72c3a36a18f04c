"""Loading budgets YAML: the example, every error with line and field in one pass, the schema."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from costwarden.budgets.loader import (
    SCHEMA_PATH, budget_json_schema, load_budgets, load_budgets_text, render_json_schema, write_json_schema,
)
from costwarden.errors import BudgetFileError, FileError

EXAMPLE = Path(__file__).resolve().parents[2] / "budgets" / "examples" / "budgets.yaml"


def _errors(text: str, **kw) -> list[tuple[int | None, str, str]]:
    with pytest.raises(FileError) as exc:
        load_budgets_text(text, "b.yaml", **kw)
    assert all(f == "b.yaml" for f, *_ in exc.value.errors)
    return [(line, field, msg) for _, line, field, msg in exc.value.errors]


def test_example_file_loads_with_nesting_actions_and_spike():
    f = load_budgets(EXAMPLE, known_channels={"finance-email", "cfo-slack", "search-slack", "search-pagerduty"})
    assert f.timezone == "Europe/Berlin"
    by_id = f.budgets_by_id
    assert by_id["acme"].amount == Decimal("50000.00") and str(by_id["acme"].period) == "month"
    team = by_id["team-search"]
    assert (team.amount, team.parent) == (Decimal("8000.00"), "acme")
    assert [t.id for t in team.thresholds] == ["actual:50", "actual:80", "forecast:100"]
    wf = by_id["rag-answer"]
    assert [b.id for b in f.ancestors("rag-answer")] == ["team-search", "acme"]
    assert (wf.amount, str(wf.period)) == (Decimal("400.00"), "day")
    assert [a.kind for a in wf.thresholds[0].actions] == ["notify", "throttle"]
    assert wf.thresholds[0].actions[1].throttle.rate_per_min == Decimal(30)
    assert [a.kind for a in wf.thresholds[1].actions] == ["notify", "block"]
    assert (wf.spike.window_minutes, wf.spike.baseline_minutes, wf.spike.factor) == (15, 360, Decimal(5))
    assert wf.scope.matches({"org": "acme", "team": "search", "workflow": "rag-answer", "env": "prod"})
    assert by_id["gpt4-experiments"].period.rolling_seconds == 7 * 86400


BAD = """\
version: 1
timezone: Europe/Atlantis
budgets:
  - id: org
    period: month
    amount: "50000"
  - id: Team Search
    parent: org
    period: monthly
    amount: -5
    scope:
      team: search
      teams: x
    thresholds:
      - at: 80
        actions:
          - notify: [finance, nope]
            block: true
      - at: 80
  - id: org
    parent: ghost
    period: 24h
    amount: "1"
    amount: 2
    spike:
      window_minutes: 15
      baseline_minutes: 10
      factor: 5
  - id: wf
    parent: wf
    period: day
"""


def test_every_error_reported_with_line_and_field_in_one_pass():
    errs = _errors(BAD, known_channels={"finance"})
    assert [(line, field) for line, field, _ in errs] == [
        (2, "timezone"),
        (7, "budgets[1].id"),
        (9, "budgets[1].period"),
        (10, "budgets[1].amount"),
        (13, "budgets[1].scope.teams"),
        (17, "budgets[1].thresholds[0].actions[0]"),
        (17, "budgets[1].thresholds[0].actions[0].notify[1]"),
        (19, "budgets[1].thresholds[1].at"),
        (20, "budgets[2].id"),
        (21, "budgets[2].parent"),
        (24, "budgets[2].amount"),
        (25, "budgets[2].spike"),
        (29, "budgets[3].amount"),
        (30, "budgets[3].parent"),
    ]
    msgs = {field: msg for _, field, msg in errs}
    assert "Europe/Atlantis" in msgs["timezone"]
    assert "not a slug" in msgs["budgets[1].id"]
    assert "unknown period 'monthly'" in msgs["budgets[1].period"]
    assert "greater than 0" in msgs["budgets[1].amount"]
    assert msgs["budgets[1].scope.teams"] == "unknown field 'teams' (did you mean 'team'?)"
    assert "exactly one of notify, throttle, block" in msgs["budgets[1].thresholds[0].actions[0]"]
    assert "unknown channel 'nope'" in msgs["budgets[1].thresholds[0].actions[0].notify[1]"]
    assert "actual:80 is listed twice" in msgs["budgets[1].thresholds[1].at"]
    assert "duplicate budget id 'org'" in msgs["budgets[2].id"]
    assert "unknown parent budget 'ghost'" in msgs["budgets[2].parent"]
    assert msgs["budgets[2].amount"] == "duplicate key (also on line 23)"
    assert "baseline_minutes must be longer" in msgs["budgets[2].spike"]
    assert msgs["budgets[3].amount"] == "required field is missing"
    assert "cycle: wf > wf" in msgs["budgets[3].parent"]


def test_error_text_is_file_line_field_message():
    with pytest.raises(BudgetFileError) as exc:
        load_budgets_text("version: 1\nbudgets:\n  - id: a\n    period: day\n", "team.yaml")
    assert str(exc.value) == "team.yaml:3: budgets[0].amount: required field is missing"
    assert exc.value.exit_code == 4


def test_yaml_syntax_error_has_its_line():
    text = "version: 1\nbudgets:\n  - id: a\n    amount: \"400\n    period: day\n"
    [(line, field, msg)] = _errors(text)
    assert (line, field) == (4, "") and msg.startswith("YAML syntax")  # where the quote opened
    [(line, _, _)] = _errors("version: 1\nbudgets:\n  - id: a\n    amount: [1, 2\n    period: day\n")
    assert line == 5
    [(line, _, _)] = _errors("version: 1\nbudgets:\n  - id: a\n  period: day\n")
    assert line == 4


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("- just\n- a list\n", "must be a mapping"),
    ("version: 1\n---\nversion: 1\n", "YAML syntax"),
])
def test_files_that_are_not_a_budget_mapping(text, message):
    [(_, _, msg)] = _errors(text)
    assert message in msg


def test_unquoted_decimals_are_read_exactly_not_as_floats():
    f = load_budgets_text(
        "version: 1\nbudgets:\n  - id: a\n    period: day\n    amount: 399.99\n"
        "    thresholds: [{at: 87.5}]\n  - id: b\n    period: day\n    amount: 0.1\n", "b.yaml")
    assert f.budgets[0].amount == Decimal("399.99") and f.budgets[0].amount_nanos == 399_990_000_000
    assert f.budgets[0].thresholds[0].id == "actual:87.5"
    assert f.budgets[1].amount_nanos == 100_000_000
    [(line, field, msg)] = _errors("version: 1\nbudgets:\n  - id: a\n    period: day\n    amount: .inf\n")
    assert (line, field) == (5, "budgets[0].amount") and "finite" in msg
    # YAML 1.1 would read 1:30.5 as 90.5 (base 60); a budget refuses it
    [(line, field, msg)] = _errors("version: 1\nbudgets:\n  - id: a\n    period: day\n    amount: 1:30.5\n")
    assert (line, field) == (5, "budgets[0].amount") and "decimal" in msg


def test_unknown_channels_only_checked_when_channels_are_known():
    text = ("version: 1\nbudgets:\n  - id: a\n    period: day\n    amount: '1'\n"
            "    spike: {window_minutes: 5, baseline_minutes: 60, factor: 3, actions: [{notify: pager}]}\n")
    assert load_budgets_text(text, "b.yaml").budgets[0].spike.actions[0].notify == ["pager"]
    [(line, field, msg)] = _errors(text, known_channels={"slack"})
    assert (line, field) == (6, "budgets[0].spike.actions[0].notify")
    assert msg == "unknown channel 'pager' (known: slack)"


def test_unreadable_file_is_a_file_error(tmp_path):
    with pytest.raises(FileError) as exc:
        load_budgets(tmp_path / "missing.yaml")
    assert exc.value.errors[0][0].endswith("missing.yaml") and "cannot read" in exc.value.errors[0][3]


def test_committed_schema_is_up_to_date():
    """Fails (and rewrites budgets/schema.json) when the model changed without regenerating it."""
    committed = SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
    if committed != render_json_schema():
        write_json_schema()
        pytest.fail("budgets/schema.json was stale and has been regenerated; review and commit it")


def test_schema_describes_the_file():
    schema = budget_json_schema()
    assert schema["title"] == "costwarden budgets file" and schema["required"] == ["version"]
    budget = schema["$defs"]["Budget"]
    assert budget["additionalProperties"] is False
    assert set(budget["required"]) == {"id", "period", "amount"}
    assert schema["$defs"]["Period"]["pattern"] == "^(day|week|month|quarter|[1-9][0-9]*[mhd])$"
    team = schema["$defs"]["Scope"]["properties"]["team"]
    assert {"type": "string"} in team["anyOf"] and {"items": {"type": "string"}, "type": "array"} in team["anyOf"]
    json.dumps(schema)  # serialisable


def test_schema_accepts_the_example_and_rejects_a_typo():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    doc = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert list(validator.iter_errors(doc)) == []
    doc["budgets"][0]["ammount"] = doc["budgets"][0].pop("amount")
    assert {e.validator for e in validator.iter_errors(doc)} >= {"required", "additionalProperties"}
