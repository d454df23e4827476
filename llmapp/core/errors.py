"""The one exception type users see.

Every error llmapp raises for bad input is an :class:`LLMAppError` whose message is a single line
naming the problem and the fix. The CLI prints it as ``error: ...`` and exits 2, with no traceback.
"""


class LLMAppError(Exception):
    """A user-facing error: one line, saying what is wrong and how to fix it."""


class ModelNotFound(LLMAppError, KeyError):
    """An unknown model name, or a registry model whose package is not installed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PromptTooLong(LLMAppError, ValueError):
    """A prompt that does not fit the model's context window."""


class ConfigError(LLMAppError, ValueError):
    """A setting that is unknown, of the wrong type or out of range (named in the message)."""
