"""Owner routing of distributed reservations (costwarden/api/owner.py): every replica computes the
same owner from the same list, adding a replica moves only the workflows it takes, and a bad
replica list is refused at start."""
from __future__ import annotations

import pytest

from costwarden.api.owner import ReplicaRouter
from costwarden.errors import ConfigError

A, B, C = "http://a:8000", "http://b:8000", "http://c:8000"
WORKFLOWS = [f"wf-{i}" for i in range(300)]


def test_every_replica_agrees_and_a_new_replica_only_takes_workflows():
    two = [ReplicaRouter([A, B], me) for me in (A, B)]
    owners = {wf: two[0].owner(wf) for wf in WORKFLOWS}
    assert owners == {wf: two[1].owner(wf) for wf in WORKFLOWS}
    assert ReplicaRouter([B, A + "/"], A).owner("wf-1") == owners["wf-1"]  # order and a trailing / don't matter
    assert 100 < sum(o == A for o in owners.values()) < 200  # spread over both
    three = ReplicaRouter([A, B, C], C)
    moved = {wf for wf in WORKFLOWS if three.owner(wf) != owners[wf]}
    assert moved and all(three.owner(wf) == C for wf in moved)


def test_hold_ids_name_their_owner():
    a, b = ReplicaRouter([A, B], A), ReplicaRouter([A, B], B)
    assert b.owner_of_hold(a.id_prefix + "abc") == A and a.owner_of_hold(b.id_prefix + "abc") == B
    with pytest.raises(Exception) as e:
        a.owner_of_hold("deadbeef-abc")
    assert getattr(e.value, "status_code", None) == 404


@pytest.mark.parametrize("replicas, me", [([A, B], C), ([A, A], A), ([], A)])
def test_a_bad_replica_list_is_refused(replicas, me):
    with pytest.raises(ConfigError):
        ReplicaRouter(replicas, me)
