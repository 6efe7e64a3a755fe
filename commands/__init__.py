"""mlkit's command line: one thin Typer sub-app per area, no business logic."""
