"""The task registry: name -> Task class, one small module per task.

    from eval.tasks import TASKS, get_task
    sorted(TASKS)            # ['backend-parity', 'generation', 'perplexity', 'rag-qa', 'retrieval', 'structured',
                             #  'summarization']
    get_task("rag-qa")       # the class; an unknown name raises LLMAppError listing the valid ones

Add a task: write ``eval/tasks/<name>.py`` with a :class:`~eval.tasks.base.Task` subclass and a
typed config dataclass, and register it here.
"""

from __future__ import annotations

from eval.tasks.base import EvalContext, System, Task
from eval.tasks.generation import GenerationTask
from eval.tasks.parity import ParityTask
from eval.tasks.perplexity import PerplexityTask
from eval.tasks.rag_qa import RAGQATask
from eval.tasks.retrieval import RetrievalTask
from eval.tasks.structured import StructuredTask
from eval.tasks.summarization import SummarizationTask
from llmapp.core.errors import LLMAppError

TASKS: dict[str, type[Task]] = {
    "perplexity": PerplexityTask,
    "rag-qa": RAGQATask,
    "retrieval": RetrievalTask,
    "summarization": SummarizationTask,
    "generation": GenerationTask,
    "backend-parity": ParityTask,
    "structured": StructuredTask,
}


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise LLMAppError(f"unknown task {name!r}; use one of: {', '.join(TASKS)}") from None


__all__ = ["TASKS", "EvalContext", "System", "Task", "get_task"]
