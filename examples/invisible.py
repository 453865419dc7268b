"""Design 1, "invisible": import agentlog, optionally set verbosity, work as usual.

Run it with ``python examples/invisible.py``; the last line on stderr says where the
run's document went.
"""

import agentlog
from agentlog import finalize_workflow, log_interaction, save_log, set_logging


def some_llm_call(input_text: str) -> str:
    # A stand-in for an LLM call; real SDK calls are recorded without this line.
    output = f"Echo: {input_text}"
    log_interaction(agent_name="my_agent", input_data=input_text, output_data=output)
    return output


@agentlog.tool
def lookup(term: str) -> str:
    return f"{term} is a word."


@agentlog.agent("researcher")
def research(question: str) -> str:
    return lookup(question.split()[-1])


def run_workflow() -> None:
    set_logging(True, verbosity=2)

    result = some_llm_call("Hello, world!")
    print("LLM result:", result)
    print("Research:", research("define agent"))

    finalize_workflow("success")
    save_log("my_invisible_log.json")


if __name__ == "__main__":
    run_workflow()
