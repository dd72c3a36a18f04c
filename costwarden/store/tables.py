"""Table names of the pipeline's commit, in the order the writer writes them.

Data first, marks last: a fired threshold's `budget_events` row and a control's row are written
after the usage they follow from. With the journal (store/journal.py) the order is not what makes
a crash safe — every block is re-applied with its own deduplication token — but it keeps a torn
commit easy to read: whatever is missing is at the end.
"""
USAGE = "usage_events"
DEAD_LETTERS = "dead_letters"
BUDGET_EVENTS = "budget_events"
ALERT_OUTBOX = "alert_outbox"
CONTROLS = "controls"
CONTROL_AUDIT = "control_audit"
BUDGET_AUDIT = "budget_audit"

COMMIT_ORDER = (USAGE, DEAD_LETTERS, BUDGET_EVENTS, ALERT_OUTBOX, CONTROLS, CONTROL_AUDIT, BUDGET_AUDIT)

COMMIT_JOURNAL = "commit_journal"  # the distributed workers' journal (store/store_journal.py), not a commit table
