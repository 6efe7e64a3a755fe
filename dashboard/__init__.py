"""mlkit's Textual dashboard: widgets that render what `mlkit.toolkit` queries return."""
