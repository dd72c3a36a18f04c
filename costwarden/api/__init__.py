"""costwarden's HTTP API (FastAPI, ASGI): usage in, decisions out, budget status, controls, audit.

    app = create_app(EmbeddedRuntime.open(settings))     # embedded mode: pipeline in this process
    app = create_app(DistributedRuntime.open(settings))  # distributed: Kafka + ClickHouse, no pipeline
See README.md for the endpoints, roles and the consistency model of reservations.
"""
from costwarden.api.app import create_app
from costwarden.api.auth import ROLES, create_token
from costwarden.api.distributed import DistributedRuntime
from costwarden.api.decisions import ControlFeed, DecisionCache, EmbeddedControlFeed
from costwarden.api.runtime import EmbeddedRuntime
from costwarden.api.server import ApiServer

__all__ = ["create_app", "EmbeddedRuntime", "DecisionCache", "ControlFeed", "EmbeddedControlFeed", "ROLES",
           "create_token", "ApiServer",
           "DistributedRuntime"]
