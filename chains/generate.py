"""Generation: a prompt template, the chat model and a string parser, composed with LCEL and streamed.

    from llmapp import load_chat_model
    from chains.generate import generate_chain
    chain = generate_chain(load_chat_model(max_tokens=64))
    for piece in chain.stream({"prompt": "Write a haiku about autumn"}):
        print(piece, end="", flush=True)

    llmapp generate "Write a haiku about autumn" [--template NAME] [--var k=v]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda


def generate_chain(chat_model: Any, template: str | Path = "generate",
                   templates_dir: str | Path | None = None) -> Runnable:
    """``prompt | chat_model | StrOutputParser()``, checking the input's variables first.

    Args:
        chat_model: any LangChain chat model (``llmapp.load_chat_model()``).
        template: a template name (``prompts.available()``) or a ``.yaml``/``.jinja`` file.
        templates_dir: an extra folder of user templates (``$LLMAPP_TEMPLATES`` is searched too).

    Returns:
        A Runnable taking a dict of the template's variables (a bare ``str`` fills the template's one
        variable) and producing ``str``; ``.stream()`` yields pieces as the model writes them.

    Raises:
        TemplateError: at call time, for missing or unexpected variables (named in the message).
    """
    from langchain_core.output_parsers import StrOutputParser

    from prompts import check_variables, load_prompt

    prompt = load_prompt(template, templates_dir)
    name = Path(str(template)).stem

    def variables(value: Any) -> dict[str, Any]:
        if isinstance(value, str):
            required = list(prompt.input_variables)
            if len(required) != 1:
                check_variables(prompt, {}, name)  # names what the template needs
            value = {required[0]: value}
        check_variables(prompt, value, name)
        return value

    return (RunnableLambda(variables, name="check_variables") | prompt | chat_model | StrOutputParser()).with_config(
        run_name=f"generate:{name}")
