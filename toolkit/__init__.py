"""mlkit's library: data, models and databases. Never imports typer, textual or rich."""

__version__ = "0.1.0"
