"""mlkit's HTTP front: `mlkit serve` runs `app.create_app()` under uvicorn. Imports toolkit,
never a command; toolkit never imports it."""
