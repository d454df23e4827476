"""langchain-tests' standard suites, run on the real bundled models, on both local chat backends.

Tool calling, tool choice, structured output and JSON mode are on (constrained decoding,
``llmapp.backends.structured``); unsupported features (images, audio, PDF) are declared through the
suites' own properties; nothing is skipped by hand.
"""

from __future__ import annotations

from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from llmapp.backends.hf import ChatLocal
from llmapp.backends.llamacpp import ChatLlamaCpp
from llmapp.models.embeddings import LocalEmbeddings

CHAT_PARAMS = {"model": "smollm2-135m-instruct"}


class _Short:
    """Replies of at most 48 tokens keep the integration suite short on 2 cores, and leave room for a
    tool call (``{"name": "magic_function", "arguments": {"input": 3}}`` is 18 tokens) or a small object."""

    @property
    def standard_chat_model_params(self):
        return {**super().standard_chat_model_params, "max_tokens": 48}


class TestChatLocalUnit(_Short, ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return ChatLocal

    @property
    def chat_model_params(self):
        return CHAT_PARAMS


class TestChatLocalIntegration(_Short, ChatModelIntegrationTests):
    @property
    def chat_model_class(self):
        return ChatLocal

    @property
    def chat_model_params(self):
        return CHAT_PARAMS

    @property
    def returns_usage_metadata(self):
        return True

    @property
    def has_tool_calling(self):
        return True

    @property
    def has_tool_choice(self):
        return True

    @property
    def has_structured_output(self):
        return True

    @property
    def supports_json_mode(self):
        return True


class TestChatLlamaCppUnit(_Short, ChatModelUnitTests):
    @property
    def chat_model_class(self):
        return ChatLlamaCpp

    @property
    def chat_model_params(self):
        return CHAT_PARAMS


class TestChatLlamaCppIntegration(TestChatLocalIntegration):
    @property
    def chat_model_class(self):
        return ChatLlamaCpp


class TestEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self):
        return LocalEmbeddings

    @property
    def embedding_model_params(self):
        return {"model": "minilm-l6"}


class TestEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self):
        return LocalEmbeddings

    @property
    def embedding_model_params(self):
        return {"model": "minilm-l6"}
