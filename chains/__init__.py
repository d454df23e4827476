"""LCEL chains over the registry's models: generation, summarization and retrieval-augmented answering.

Each module holds one chain (or the store it reads) and exposes factory functions that take their
models as arguments and return LangChain Runnables. Nothing here loads a model itself.

    from llmapp import load_chat_model
    from chains.generate import generate_chain
    from chains.summarize import summarize
    from chains.index import build_index
    from chains.store import Store
    from chains.rag import rag_chain

    build_index(["docs/"], "store")
    print(rag_chain("store", load_chat_model()).invoke("What is a VAE?"))

Modules:
    generate.py   prompt | chat model | StrOutputParser
    summarize.py  stuff / map_reduce / refine, budgeted by the model's own tokenizer
    index.py      load, split, embed and store documents (FAISS + JSONL, no pickle)
    rag.py        retrieve (vector / BM25 / hybrid, MMR) and answer with [n] citations
"""

from llmapp.corpora import GENAI_NOTES as DEMO_DATA  # the bundled demo corpus (five notes)

__all__ = ["DEMO_DATA"]
