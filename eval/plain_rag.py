"""The plain LangChain RAG pipeline: the baseline row that ``llmapp ask`` must beat on the same model.

What a new user writes from the LangChain tutorials, nothing tuned:

- ``RecursiveCharacterTextSplitter(chunk_size=800, chunk_overlap=100)`` (characters) over each file;
- langchain-community ``FAISS.from_documents`` over the same embeddings, in memory (never
  ``load_local``, which unpickles), and its retriever, top 3;
- the system prompt "Answer the question using only the context. Be brief.", the chunks joined by
  blank lines;
- greedy decoding, 96 new tokens, the model's raw decoding (no loop guard, no repetition penalty).

    from eval.plain_rag import PlainRAG
    rag = PlainRAG(["llmapp/corpora/genai-notes"], load_embeddings())
    out = rag.answer("What is a VAE?", chat)       # {"answer", "sources", "abstained": False}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHUNK_CHARS, OVERLAP_CHARS, TOP_K, MAX_TOKENS = 800, 100, 3, 96
SYSTEM = "Answer the question using only the context. Be brief."
PLAIN_DECODING = {"temperature": 0.0, "max_tokens": MAX_TOKENS, "repetition_penalty": 1.0}


class PlainRAG:
    """The tutorial pipeline over the files under ``paths``, built in memory.

    Args:
        paths: files and folders (read with ``chains.documents``, as ``llmapp index`` reads them).
        embeddings: LangChain embeddings (the same model ``llmapp ask`` uses, for a fair comparison).
    """

    def __init__(self, paths: list[str | Path], embeddings: Any) -> None:
        from langchain_community.vectorstores import FAISS
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from chains.documents import find_files, read_document

        splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_CHARS, chunk_overlap=OVERLAP_CHARS)
        docs = [Document(read_document(p), metadata={"source": str(p)}) for p in find_files(paths)]
        self.chunks = splitter.split_documents(docs)
        self.store = FAISS.from_documents(self.chunks, embeddings)
        self.retriever = self.store.as_retriever(search_kwargs={"k": TOP_K})

    def messages(self, question: str, docs: list[Any]) -> list[Any]:
        """The prompt the chain sends, for the generation cache."""
        from langchain_core.prompts import ChatPromptTemplate

        prompt = ChatPromptTemplate.from_messages([("system", SYSTEM),
                                                   ("human", "Context:\n{context}\n\nQuestion: {question}")])
        return prompt.format_messages(context=_join(docs), question=question)

    def answer(self, question: str, chat: Any) -> dict[str, Any]:
        """Retrieve the top 3 chunks and answer; the record has the shape ``rag_chain`` returns."""
        docs = self.retriever.invoke(question)
        text = "".join(c.content for c in chat.stream(self.messages(question, docs)))
        sources = [{"n": i, "source": d.metadata["source"], "text": d.page_content} for i, d in enumerate(docs, 1)]
        return {"answer": text.strip(), "sources": sources, "abstained": False}


def _join(docs: list[Any]) -> str:
    return "\n\n".join(d.page_content for d in docs)
