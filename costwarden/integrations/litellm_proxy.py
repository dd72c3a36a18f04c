"""The costwarden callback for the LiteLLM proxy, configured from the environment.

    # config.yaml of `litellm --config config.yaml`
    litellm_settings:
      callbacks: costwarden.integrations.litellm_proxy.callback

    COSTWARDEN_URL=http://costwarden:8787 COSTWARDEN_TOKEN=<gateway token> litellm --config config.yaml

Optional: COSTWARDEN_LITELLM_MODE=check (default reserve), COSTWARDEN_LITELLM_DEFAULT_WORKFLOW,
COSTWARDEN_FAIL_OPEN=1 (allow calls while costwarden cannot be reached; default: refuse them).
See docs/gateway.md.
"""
from __future__ import annotations

from costwarden.integrations.litellm import CostwardenCallback

callback = CostwardenCallback.from_env()
