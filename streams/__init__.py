"""costwarden.streams"""
