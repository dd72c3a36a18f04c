"""The web console under /ui (README.md): server-rendered pages over the same runtime, token book
and roles as the JSON API. `costwarden.api.ui.console.router` is what create_app includes."""
