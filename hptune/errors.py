"""Typed errors. A `UserError` is bad input: the CLI prints its message as one
paragraph and exits 1, without a traceback. Anything else is a bug in hptune."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user; `str(err)` is the whole, self-contained message."""


class ConfigError(UserError):
    """A config file (or a command-line override) is invalid.

    The message names the file, the key path, the rule, the value received
    and, where one exists, a fix.
    """

    def __init__(self, source: str, key: str, message: str, *, line: int | None = None) -> None:
        self.source = source
        self.key = key
        self.line = line
        self.detail = message
        where = f"{source}:{line}" if line is not None else source
        where = f"{where}: {key}" if key else where
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple:  # errors cross process boundaries (workers, Dask) intact
        return (_config_error, (self.source, self.key, self.detail, self.line))


def _config_error(source: str, key: str, message: str, line: int | None) -> ConfigError:
    return ConfigError(source, key, message, line=line)


class DataError(UserError):
    """A dataset cannot be loaded or split."""


class RunError(UserError):
    """A run directory is missing, unreadable, locked or in an unexpected state."""


class StorageError(RunError):
    """A run folder could not be written (a full disk, a read-only place); the message says what is safe."""


def storage_reason(err: OSError) -> str:
    """Why a write failed, in words a user can act on."""
    import errno

    if err.errno == errno.ENOSPC:
        return "the disk is full"
    if err.errno == errno.EDQUOT:
        return "the disk quota is exceeded"
    if err.errno == errno.EROFS:
        return "the file system is read-only"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if err.errno == errno.ENAMETOOLONG:
        return "the file name is too long"
    return err.strerror or type(err).__name__
