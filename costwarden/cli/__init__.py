"""costwarden command line."""
def main() -> None:  # replaced below
    raise SystemExit(0)
