"""Where llmapp keeps what it writes: caches, conversations, demo stores, benchmark results.

Everything lives under ``$LLMAPP_HOME`` (default ``~/.cache/llmapp``), so one variable moves or
isolates it all (the tests give each session its own).

    from llmapp.core.paths import home
    home() / "conversations"
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The folder llmapp keeps its caches, conversations and demo stores in (``$LLMAPP_HOME``)."""
    return Path(os.environ.get("LLMAPP_HOME") or Path.home() / ".cache" / "llmapp").expanduser()
