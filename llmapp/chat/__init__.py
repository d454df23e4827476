"""The chat REPL: the session engine (``session``), saved conversations (``conversation``) and the terminal.

    from llmapp.chat.session import ChatSession
    llmapp chat [--store ./store] [--backend hf]
"""
