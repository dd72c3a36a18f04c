"""costwarden.budgets"""
