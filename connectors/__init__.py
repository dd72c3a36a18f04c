"""costwarden.connectors"""
