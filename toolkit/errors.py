"""The one exception type the command line turns into an `error:` line."""


class MlkitError(Exception):
    """A failure the user can act on: a message and, where one helps, a hint."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class TooLittleData(MlkitError):
    """Too little data in a training window to learn from: an unattended run (cron,
    `train all`) records it as a skip and keeps the serving model; by hand it is an error."""
