"""langchain-tests' standard suites, run on the real bundled models, on both local chat backends.

Unsupported features (tools, images, audio, PDF, JSON mode) are declared through the suites' own
properties; nothing is skipped by hand.
"""

from __future__ import annotations

from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests

from llmapp.backends.hf import ChatLocal
from llmapp.backends.llamacpp import ChatLlamaCpp
from llmapp.models.embeddings import LocalEmbeddings

CHAT_PARAMS = {"model": "smollm2-135m-instruct"}


class _Short:
    """Replies of at most 16 tokens keep the integration suite to a minute or two on 2 cores."""

    @property
    def standard_chat_model_params(self):
        return {**super().standard_chat_model_params, "max_tokens": 16}


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
    def supports_json_mode(self):
        return False


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
