"""Schema migrations, applied in order by costwarden.store.migrate (NNN_name.sql or NNN_name.py)."""
