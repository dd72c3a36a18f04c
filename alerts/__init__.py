"""costwarden.alerts"""
