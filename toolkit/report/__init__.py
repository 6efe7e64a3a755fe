"""Self-contained HTML reports of model versions and feature drift, and version diffs."""
