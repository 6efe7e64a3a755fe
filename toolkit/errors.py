"""The one exception type the command line turns into an `error:` line."""

# The exit code of an outcome that needs attention but is not a failure: drift found, an
# alert firing, a trained model kept from serving while the previous version serves on.
NOTICE_EXIT = 3


class MlkitError(Exception):
    """A failure the user can act on: a message and, where one helps, a hint."""

    exit_code = 1  # NOTICE_EXIT: not a failure; the command line says `warning:`

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class TooLittleData(MlkitError):
    """Too little data in a training window to learn from: an unattended run (cron,
    `train all`) records it as a skip and keeps the serving model; by hand it is an error."""


def explain_unexpected(exc: Exception) -> MlkitError:
    """An exception mlkit did not raise on purpose as a message and hint: a database error
    as `make_engine` words it, a file system error with its path, anything else as a bug."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    verbose = "run with --verbose for details"
    if isinstance(exc, DBAPIError):
        from .db import explain_db_error

        explained = explain_db_error(exc)
        return MlkitError(explained.message, explained.hint or verbose)
    if isinstance(exc, SQLAlchemyError):
        return MlkitError(f"database error: {str(exc).splitlines()[0]}", verbose)
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        return MlkitError(f"{exc.strerror}:{where}", "check the path and its permissions")
    return MlkitError(
        f"unexpected {type(exc).__name__}: {exc}",
        "run with --verbose for the traceback and report it",
    )


def message_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what an
    `error:` line quotes of a library's failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
