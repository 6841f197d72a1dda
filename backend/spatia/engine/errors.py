"""The engine's errors that callers catch, importable without torch (the CLI catches them
before anything heavy is loaded)."""


class ModelUnavailable(RuntimeError):
    """A model cannot run here; the message says why and which command fixes it."""


class Cancelled(Exception):
    """Raised by a generator between steps once the caller's `should_cancel()` returns True."""


class ModelInputError(ValueError):
    """An input array has the wrong shape, dtype or value range; the message names it."""


class WorldError(ValueError):
    """The world cannot do what was asked; the message says why."""
