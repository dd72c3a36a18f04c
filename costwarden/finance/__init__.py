"""Finance: reports, unit economics, forecasts, FOCUS export, budget simulation, re-pricing."""
