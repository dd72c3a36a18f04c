"""Integrations with gateways and frameworks (LiteLLM)."""
