from datetime import datetime, timezone

import pytest

from costwarden.errors import FileError
from costwarden.events import UsageEvent
from costwarden.streams.attribution import Attributor, load_rules_text

RULES = """
version: 1
rules:
  - id: search
    match: {api_key_id: "key_search_*"}
    set: {team: search, cost_center: cc-1}
  - id: proj
    match: {project_id: proj_X, model: "gpt-4*"}
    set: {workflow: "wf-{project_id}", team: other}
  - id: catch-env
    match: {tag.env: prod}
    set: {cost_center: cc-prod}
"""


def ev(**attr) -> UsageEvent:
    tags = attr.pop("tags", {})
    return UsageEvent(event_id="e", occurred_at=datetime(2026, 11, 1, tzinfo=timezone.utc), source="t",
                      provider="openai", model=attr.pop("model", "gpt-4.1"), attribution={**attr, "tags": tags})


def test_first_matching_rule_fills_fields_and_tags_win():
    a = Attributor(load_rules_text(RULES))
    r = a.attribute(ev(api_key_id="key_search_prod", tags={"workflow": "rag"}))
    assert (r.team, r.workflow, r.cost_center) == ("search", "rag", "cc-1")
    r = a.attribute(ev(api_key_id="key_search_prod", tags={"team": "explicit"}))
    assert r.team == "explicit"  # an explicit tag is never overwritten by a rule


def test_later_rules_fill_only_empty_fields_with_templates():
    a = Attributor(load_rules_text(RULES))
    r = a.attribute(ev(project_id="proj_X", tags={"env": "prod"}))
    assert (r.team, r.workflow, r.cost_center, r.env) == ("other", "wf-proj_X", "cc-prod", "prod")
    assert r.rule_id == "tags+proj+catch-env"


def test_unmatched_spend_is_unallocated():
    r = Attributor(load_rules_text(RULES)).attribute(ev(api_key_id="key_unknown"))
    assert (r.team, r.workflow, r.cost_center, r.rule_id) == ("unallocated",) * 4


def test_bad_rules_file_reports_every_error_with_its_line():
    text = "version: 1\nrules:\n  - id: a\n    match: {bogus: x}\n    set: {team: t, colour: red}\n  - id: a\n    set: {team: u}\n"
    with pytest.raises(FileError) as e:
        load_rules_text(text, "rules.yaml")
    errs = e.value.errors
    assert ("rules.yaml", 5, "rules.0.set.colour", "can only set team, workflow, cost_center, env") in errs
    assert any(f == "rules.0.match.bogus" and line == 4 for _, line, f, _ in errs)
    assert any("duplicate rule id" in m and line == 6 for _, line, _, m in errs)


def test_cached_answers_are_the_rules_answers_for_every_mix_of_the_keys_they_read():
    """The attributor caches by the values its rules read: every combination, asked twice in a
    shuffled order, gets what a fresh attributor (an empty cache) computes."""
    import itertools
    import random

    cases = [dict(api_key_id=k, project_id=p, model=m, tags=t) for k, p, m, t in itertools.product(
        [None, "key_search_a", "key_other"], [None, "proj_X", "proj_Y"], ["gpt-4.1", "claude-x"],
        [{}, {"env": "prod"}, {"team": "explicit"}, {"workflow": "rag", "env": "dev"}])]
    cached = Attributor(load_rules_text(RULES))
    order = cases * 2
    random.Random(3).shuffle(order)
    for c in order:
        fresh = Attributor(load_rules_text(RULES)).attribute(ev(**dict(c, tags=dict(c["tags"]))))
        assert cached.attribute(ev(**dict(c, tags=dict(c["tags"])))) == fresh, c
