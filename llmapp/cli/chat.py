"""``llmapp chat``: the terminal chat (``llmapp.chat.session`` + ``llmapp.chat.terminal``).

    llmapp chat
    llmapp chat --system "Answer in one sentence." --set temperature=0.7
    llmapp chat --store ./store          # RAG: answers with [n] citations
    llmapp chat --continue               # resume the last conversation
    echo "Name a colour." | llmapp chat  # piped: bare replies, no decoration
"""

from __future__ import annotations

import logging
import sys

import click


@click.command()
@click.option("-m", "--model", default=None,
              help="Chat model: registry name, local HF directory, .gguf file or openai:URL#MODEL "
                   "(default: smollm2-135m-instruct).")
@click.option("--backend", type=click.Choice(["llamacpp", "hf", "openai", "fake"]), default=None,
              help="What runs the model: llamacpp (GGUF, fast), hf (transformers), openai (a remote server). "
                   "Default: chosen from the model.")
@click.option("-s", "--system", default=None, help="System prompt.")
@click.option("--store", type=click.Path(file_okay=False), default=None,
              help="RAG store folder (from `llmapp index`): answers cite it as [n].")
@click.option("-c", "--continue", "resume", is_flag=True,
              help="Resume the last autosaved conversation.")
@click.option("-o", "--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Generation setting (repeatable): temperature, max_tokens, top_p, top_k, seed, "
                   "repetition_penalty, max_context.")
@click.option("--max-context", type=int, default=None,
              help="Cap the context window in tokens; history is trimmed to fit (default: the model's window).")
@click.option("--no-save", is_flag=True, help="Do not autosave this conversation.")
@click.option("--plain", is_flag=True, help="Print replies as raw text, not rendered Markdown.")
def chat(model: str | None, backend: str | None, system: str | None, store: str | None, resume: bool, settings: tuple[str, ...],
         max_context: int | None, no_save: bool, plain: bool) -> None:
    """Chat in the terminal: streaming, history, slash commands, RAG.

    Type /help inside for the commands (/set, /tokens, /retry, /save, /load, /rag, ...). Esc then
    Enter adds a line; a \"\"\"-block spans lines. Ctrl-C stops a reply, Ctrl-D leaves.
    Conversations are autosaved under $LLMAPP_HOME/conversations. When stdin is not a terminal,
    each line is a message and replies are printed bare.

    \b
    Examples:
      llmapp chat
      llmapp chat --system "You are terse." -o temperature=0.7 -o max_tokens=128
      llmapp chat --store ./store
      llmapp chat --backend hf                       # transformers instead of llama.cpp
      llmapp chat --continue
      printf 'My name is Ada.\\nWhat is my name?\\n' | llmapp chat
    """
    from llmapp.chat.conversation import ConversationLog, latest_conversation
    from llmapp.chat.session import ChatSession
    from llmapp.chat.terminal import is_interactive, run_plain, run_terminal
    from llmapp.models import DEFAULT_CHAT

    if logging.getLogger().level >= logging.WARNING:  # bm25s pins its own logger at DEBUG on import
        logging.getLogger("bm25s").setLevel(logging.WARNING)

    log, state, banner = None, None, ""
    if resume:
        log, state = ConversationLog.open_existing(latest_conversation())
        banner = f"continuing {log.path.name} ({len(state.messages)} messages)"
    elif not no_save:
        log = ConversationLog.new()
    session = ChatSession(model=model or (state.model if state else None) or DEFAULT_CHAT, backend=backend)
    if state:
        session.restore(state, record=False)
    if system is not None:
        session.system = system or None
    if settings:
        session.set(list(settings), record=False)
    if max_context is not None:
        session.set({"max_context": max_context}, record=False)
    if store:
        session.use_store(store)
    session.log = None if no_save else log  # attached last: a new log's header records the starting state
    if resume and (system is not None or settings or max_context is not None or model):
        session.record_start()
    if not is_interactive():
        session.preload()
        run_plain(session, sys.stdin, sys.stdout, sys.stderr)
        return
    session.preload()  # the weights load while you type the first message
    rag = f" · RAG: {store}" if store else ""
    on = f" ({backend})" if backend else ""
    hello = f"llmapp chat · {session.model_name}{on}{rag} · /help for commands · Ctrl-D to leave"
    run_terminal(session, markdown=not plain, banner=f"{hello}\n{banner}" if banner else hello)
