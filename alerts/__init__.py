"""costwarden.alerts: budget alert messages, delivery through Apprise, the durable outbox."""
from costwarden.alerts.message import BudgetAlert, format_alert
from costwarden.alerts.notifier import AppriseNotifier, LogNotifier, Notifier
from costwarden.alerts.outbox import DeliveryReport, DeliveryWorker, Outbox

__all__ = ["AppriseNotifier", "BudgetAlert", "DeliveryReport", "DeliveryWorker", "LogNotifier", "Notifier",
           "Outbox", "format_alert"]
