"""The one error tree of costwarden.

    CostwardenError                 exit 1, HTTP 500
    ├── ConfigError                 exit 2, HTTP 500   bad settings at start-up
    ├── InvalidEventError           exit 3, HTTP 422   an event that goes to the dead-letter stream
    ├── BudgetFileError             exit 4, HTTP 422   a budget / catalogue / rules file with errors
    ├── StoreError                  exit 5, HTTP 503   ClickHouse (chDB or server) failed
    ├── DeliveryError               exit 6, HTTP 502   a notification could not be delivered
    ├── ControlError                exit 7, HTTP 409   a control change that is not allowed
    ├── ConnectorError              exit 8, HTTP 502   a source could not be read
    │   └── ConnectorAuthError      exit 9, HTTP 401   the source refused our credentials
    └── NotOfferedError             exit 10, HTTP 501  not offered in this mode (says where it is)

Every error carries a message fit for a person; none carries a secret.
"""
from __future__ import annotations


class CostwardenError(Exception):
    exit_code = 1
    http_status = 500


class ConfigError(CostwardenError):
    exit_code = 2


class InvalidEventError(CostwardenError):
    """An event that cannot be accepted. `reason` is a short machine-readable code."""

    exit_code = 3
    http_status = 422

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class FileError(CostwardenError):
    """A YAML file (budgets, price catalogue, attribution rules) with errors.

    `errors` holds one (file, line, field, message) tuple per problem, all found in one pass.
    """

    exit_code = 4
    http_status = 422

    def __init__(self, errors: list[tuple[str, int | None, str, str]]) -> None:
        self.errors = errors
        lines = [f"{f}:{ln if ln is not None else '?'}: {field}: {msg}" for f, ln, field, msg in errors]
        super().__init__("\n".join(lines))


BudgetFileError = FileError


class StoreError(CostwardenError):
    exit_code = 5
    http_status = 503


class DeliveryError(CostwardenError):
    exit_code = 6
    http_status = 502


class ControlError(CostwardenError):
    exit_code = 7
    http_status = 409


class ConnectorError(CostwardenError):
    exit_code = 8
    http_status = 502


class ConnectorAuthError(ConnectorError):
    exit_code = 9
    http_status = 401


class NotOfferedError(CostwardenError):
    exit_code = 10
    http_status = 501
