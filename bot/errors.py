"""The core's error tree. Every layer maps its own failures into it at its boundary.

::

    BotError
    ├── ConfigError                 bad config file, setting or card path (start-up)
    ├── BackendError                anything from an LLM backend, mapped in one place per family
    │   ├── BackendAuthError        401/403: missing or wrong key
    │   ├── BackendNotFound         404: wrong model name or base URL
    │   ├── BackendRateLimited      429 (retry_after seconds, when the server said)
    │   ├── BackendUnavailable      5xx, connection refused, timeouts
    │   └── BackendProtocolError    a body or stream that is not what the family speaks
    │       └── BackendStreamCut    the stream ended before the backend said it finished
    ├── StateError                  Redis unreachable or a fenced write refused
    │   └── LockLost                another holder took the channel: this one must not write
    └── UserFacingError             bad user input, with the text to show
        └── MessageTooLong          a message that cannot fit the context (not kept)

Every error has :meth:`BotError.user_message`: one line for chat, never a traceback or secret.
"""

from __future__ import annotations


class BotError(Exception):
    """Root of the tree. ``hint`` says what to do about it."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def user_message(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(BotError):
    hint = "fix the setting and start again"


class BackendError(BotError):
    """A backend failed. ``backend`` names the configured backend; ``detail`` is for logs."""

    hint = "try again in a moment"

    def __init__(
        self, message: str, *, backend: str = "", detail: str = "", hint: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.backend = backend
        self.detail = detail

    def user_message(self) -> str:
        where = f"[{self.backend}] " if self.backend else ""
        return where + super().user_message()


class BackendAuthError(BackendError):
    hint = "check the API key variable named in the backend's config"


class BackendNotFound(BackendError):
    hint = "check the model name and base URL (`sillybot check` lists the models)"


class BackendRateLimited(BackendError):
    hint = "the backend is rate-limiting; wait and try again"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        backend: str = "",
        detail: str = "",
        hint: str = "",
    ) -> None:
        super().__init__(message, backend=backend, detail=detail, hint=hint)
        self.retry_after = retry_after


class BackendUnavailable(BackendError):
    hint = "is the server running and the base URL right? (`sillybot check`)"


class BackendProtocolError(BackendError):
    hint = "the backend answered in an unexpected format; check the base URL and API family"


class BackendStreamCut(BackendProtocolError):
    hint = "the reply was cut off; regenerate or continue it"


class StateError(BotError):
    hint = "is Redis running? (`sillybot check`)"


class LockLost(StateError):
    hint = "another process took over this channel"


class UserFacingError(BotError):
    """Bad input from a chat user; ``message`` is shown as is."""


class MessageTooLong(UserFacingError):
    """The user's message does not fit the context with the character: it is not kept."""
