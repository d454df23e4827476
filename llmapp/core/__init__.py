"""The kernel every other layer builds on: typed configs, the user-facing error, atomic files, paths.

Nothing here imports torch, transformers or LangChain, so everything above can use it freely.

    from llmapp.core.config import GenerationConfig
    from llmapp.core.errors import LLMAppError
    from llmapp.core.files import write_text, replace_dir
    from llmapp.core.paths import home
"""
