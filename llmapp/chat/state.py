"""A conversation's state at one moment, and the checks on everything a chat file says about it.

:class:`ChatState` is what replaying a conversation log (or reading a ``/save``\\ d file) yields:
system prompt, messages, model and settings. Files are untrusted, so each message and each saved
setting is validated here as it is read (settings by ``GenerationConfig`` itself); a bad one is a
``ValueError`` that the readers in ``llmapp.chat.conversation`` turn into one line naming the file.

    from llmapp.chat.state import ChatState, check_settings
    check_settings({"temperature": 0.7, "max_context": 2048})
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from llmapp.core.config import apply_overrides
from llmapp.core.errors import LLMAppError
from llmapp.core.validate import check_path, check_text

log = logging.getLogger(__name__)

ROLES = ("user", "assistant")


@dataclass
class ChatState:
    """What a conversation holds at one moment: the replayed result of its event log."""

    system: str | None = None  # the system prompt; None = the model's own default
    messages: list[dict[str, Any]] = field(default_factory=list)  # {"role", "content", "partial"?, "sources"?}
    model: str | None = None  # the chat model it was last talking to
    settings: dict[str, Any] = field(default_factory=dict)  # GenerationConfig overrides in force

    def apply(self, event: dict[str, Any], strict: bool = True) -> None:
        """Replay one event onto this state.

        Args:
            event: one event of the log.
            strict: a bad ``settings`` value raises ``ValueError``; False drops the settings with a
                warning instead, so an autosave can never lock its own history away (``--continue``).
        """
        kind = event.get("type")
        if kind == "header":
            self.system, self.model = text_or_none(event, "system"), text_or_none(event, "model")
            self.settings = _settings_of(event.get("settings"), strict)
        elif kind == "message":
            self.messages.append(check_message(event))
        elif kind == "system":
            self.system = text_or_none(event, "content")
        elif kind == "settings":
            self.settings = _settings_of(event.get("values"), strict)
            self.model = text_or_none(event, "model") if "model" in event else self.model
        elif kind == "pop":
            if self.messages:
                self.messages.pop()
        elif kind == "reset":
            self.messages.clear()
        else:
            raise ValueError(f"unknown event type {kind!r}")


def check_settings(raw: Any) -> dict[str, Any]:
    """Validate saved generation settings (GenerationConfig fields plus ``max_context``).

    Raises:
        ValueError: not an object, an unknown setting, or a value GenerationConfig refuses (named).
    """
    from llmapp.core.config import GenerationConfig

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"'settings' must be an object of setting: value, not {type(raw).__name__}")
    settings = dict(raw)
    if "stop" in settings and not isinstance(settings["stop"], list):
        raise ValueError(f"settings: stop must be a list of strings, not {type(settings['stop']).__name__}")
    for stop in settings.get("stop") or []:
        if isinstance(stop, str):
            check_text("settings: stop", stop)
    max_context = settings.pop("max_context", None)
    if max_context is not None and (isinstance(max_context, bool) or not isinstance(max_context, int)
                                    or max_context < 16):
        raise ValueError(f"settings: max_context={max_context!r} must be a whole number of at least 16")
    try:
        GenerationConfig().replace(**settings)
    except ValueError as exc:  # ConfigError names the setting and its valid range
        raise ValueError(f"settings: {exc}") from None
    return dict(raw)


def _settings_of(raw: Any, strict: bool) -> dict[str, Any]:
    try:
        return check_settings(raw)
    except ValueError as exc:
        if strict:
            raise
        log.warning("ignoring saved settings (%s); the defaults apply", exc)
        return {}


def clean_text(text: str) -> str:
    """``text`` with anything that is not Unicode (bytes a non-UTF-8 terminal or pipe let through as
    surrogates) replaced by U+FFFD, so the history can always be saved and tokenized."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes Python could not decode, as they were
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")  # surrogates from elsewhere
    return raw.decode("utf-8", "replace")


def _plain_json(value: Any) -> bool:
    """True if ``value`` writes back as UTF-8 JSON (so a later autosave cannot fail on it)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
        return True
    except (ValueError, TypeError, RecursionError):
        return False


def text_or_none(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} must be a string or null, not {type(value).__name__}")
    if value is not None and key == "model":
        check_path(key, value)  # it is loaded by name: a NUL would fail deep in a filesystem call
    return value if value is None else check_text(key, value)


def check_message(raw: Any) -> dict[str, Any]:
    """Validate one message and return it as a clean dict.

    Raises:
        ValueError: a message without a valid role or with non-text content.
    """
    if not isinstance(raw, dict):
        raise ValueError("a message must be a JSON object")
    role, content = raw.get("role"), raw.get("content")
    if role not in ROLES:
        raise ValueError(f"message role must be one of {', '.join(ROLES)}, not {role!r}")
    if not isinstance(content, str):
        raise ValueError("message content must be a string")
    check_text("content", content)
    msg: dict[str, Any] = {"role": role, "content": content}
    if raw.get("partial"):
        msg["partial"] = True
    if isinstance(raw.get("sources"), list) and _plain_json(raw["sources"]):
        msg["sources"] = raw["sources"]
    return msg


def parse_settings(items: dict[str, Any], config: Any, max_context: int | None) -> tuple[Any, int | None]:
    """``config`` and ``max_context`` with ``items`` (``/set`` pairs or saved settings) applied and validated.

    Returns:
        The new ``(config, max_context)``; the inputs are never changed, so an error changes nothing.

    Raises:
        LLMAppError: an unknown setting or a bad value, named in one line.
    """
    items = dict(items)
    if "max_context" in items:
        raw = items.pop("max_context")
        if isinstance(raw, bool) or isinstance(raw, float) or (raw is not None and not isinstance(raw, (int, str))):
            raise LLMAppError(f"bad value for max_context: {raw!r} is not a whole number")
        try:
            max_context = None if raw is None or str(raw).lower() in ("none", "0", "") else int(raw)
        except ValueError:
            raise LLMAppError(f"bad value for max_context: {raw!r} is not a whole number") from None
        if max_context is not None and not 16 <= max_context <= 10_000_000:
            raise LLMAppError("max_context must be from 16 to 10,000,000 tokens (or none for the model's window)")
    try:
        config = apply_overrides(config, items)
    except ValueError as exc:
        extra = ", max_context" if str(exc).startswith("unknown setting") else ""
        raise LLMAppError(f"{exc}{extra}") from None
    return config, max_context
