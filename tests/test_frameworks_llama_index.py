"""LlamaIndex: agents and engines as interactions, tools as actions (instrumentation).

``llama-index-llms-openai`` would need an older ``openai`` than the suite's, so the LLM
here is a small ``CustomLLM`` calling the real ``openai`` SDK (as users write for their own
endpoints), over loopback HTTP to ``tests/fake_llm.py``. Each agent run or engine query is
one interaction, each tool call a ``tool:<name>`` action, and each request the server
received exactly one LLM record (made by the openai adapter) inside it.

Covers A7: llama-index imported before or after agentlog: same structure (subprocess).
Covers A8: LlamaIndex over the openai SDK: LLM records equal the requests the server got.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydantic warns about llama-index's own field specs
    llama_index_core = pytest.importorskip("llama_index.core")
    from llama_index.core import Document, SummaryIndex
    from llama_index.core.agent.workflow import ReActAgent
    from llama_index.core.llms import (
        ChatMessage,
        ChatResponse,
        CompletionResponse,
        CustomLLM,
        LLMMetadata,
    )
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.tools import FunctionTool

import openai

from agentlog.integrations import llama_index_instr as adapter
from agentlog.testing import capture
from fake_llm import OPENAI_KEY, FakeLLM, Reply
from helpers import REPO, validate_document
from llm_testing import llm_records

# llama-index-core 0.12 (and its llama-index-workflows) call deprecated APIs, their own
# and pydantic's, in their own code.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:llama_index",
                                        "ignore::DeprecationWarning:workflows",
                                        "ignore::DeprecationWarning:pydantic",
                                        "ignore::pydantic.warnings.PydanticDeprecatedSince20",
                                        "ignore::pydantic.warnings.PydanticDeprecatedSince211")



def _wire(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [{"role": m.role.value, "content": m.content} for m in messages]


class OpenAIOnFake(CustomLLM):
    """A user's own LLM class over the openai SDK."""

    base_url: str

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini", is_chat_model=True)

    def _client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=OPENAI_KEY, max_retries=0)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        with self._client() as client:
            r = client.chat.completions.create(model="gpt-4o-mini", messages=_wire(messages))
        return ChatResponse(message=ChatMessage(role="assistant",
                                                content=r.choices[0].message.content))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage],
                           **kwargs: Any) -> AsyncIterator[ChatResponse]:
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=OPENAI_KEY,
                                    max_retries=0)
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                      messages=_wire(messages))

        async def gen() -> AsyncIterator[ChatResponse]:
            text = ""
            async for chunk in stream:
                delta = (chunk.choices[0].delta.content or "") if chunk.choices else ""
                text += delta
                yield ChatResponse(message=ChatMessage(role="assistant", content=text),
                                   delta=delta)
            await client.close()

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        with self._client() as client:
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}])
        return CompletionResponse(text=r.choices[0].message.content or "")

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def interactions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [ix for it in doc["iterations"] for ix in it["interactions"]]


def actions(ix: dict[str, Any]) -> list[str]:
    return sorted(a["action_name"] for a in ix["actions"])


REACT = (Reply(text='Thought: I need to add.\nAction: add\nAction Input: {"a": 2, "b": 3}'),
         Reply(text="Thought: I can answer.\nAnswer: 5"))


def test_react_agent_with_tool(srv: FakeLLM) -> None:
    """An agent run (a workflow, whose steps run in tasks of their own): one interaction
    named after the agent; the tool an action; each streamed request one LLM record."""
    srv.script(*REACT)
    agent = ReActAgent(name="calc", tools=[FunctionTool.from_defaults(add)],
                       llm=OpenAIOnFake(base_url=srv.openai_base_url))

    async def main() -> Any:
        return await agent.run("2+3?")

    with capture() as cap:
        result = asyncio.run(main())
    assert str(result) == "5"
    doc = validate_document(cap.document())
    (ix,) = interactions(doc)
    assert ix["agent_name"] == "calc" and ix["status"] == "completed"
    assert ix["output_data"] == "5"
    assert actions(ix) == ["llm:openai.chat", "llm:openai.chat", "tool:add"]
    tool = next(a for a in ix["actions"] if a["action_name"] == "tool:add")
    assert tool["input_data"] == {"a": 2, "b": 3} and tool["output_data"] == 5
    assert all(r["llm"]["streamed"] for r in llm_records(doc))
    assert len(llm_records(doc)) == srv.count() == 2
    assert adapter.TRACKER.open == {}


def test_query_engine(srv: FakeLLM) -> None:
    """A query: one interaction named after the engine, its question in, its answer out."""
    llm = OpenAIOnFake(base_url=srv.openai_base_url)
    index = SummaryIndex.from_documents([Document(text="Owls hunt at night.")])
    engine = index.as_query_engine(llm=llm)
    with capture() as cap:
        answer = engine.query("When do owls hunt?")
    doc = validate_document(cap.document())
    (ix,) = interactions(doc)
    assert ix["agent_name"] == "RetrieverQueryEngine"
    assert ix["output_data"] == str(answer)
    assert actions(ix) == ["llm:openai.chat"] * srv.count() and srv.count() >= 1
    assert len(llm_records(doc)) == srv.count()


def test_failing_query_propagates(srv: FakeLLM) -> None:
    """An LLM error inside a query: the SDK's own exception reaches the caller, the
    interaction fails, error_log holds it once."""
    srv.script(Reply(status=500))
    engine = SummaryIndex.from_documents([Document(text="x")]).as_query_engine(
        llm=OpenAIOnFake(base_url=srv.openai_base_url))
    with capture() as cap, pytest.raises(openai.InternalServerError):
        engine.query("q")
    doc = validate_document(cap.document())
    (ix,) = interactions(doc)
    assert ix["status"] == "failed" and ix["actions"][0]["error"]["type"].endswith(
        "InternalServerError")
    assert len(doc["error_log"]) == 1
    assert len(llm_records(doc)) == srv.count() == 1


def test_bare_llm_call_is_the_sdk_record(srv: FakeLLM) -> None:
    """An LLM used on its own is no interaction of ours: the openai record stands alone."""
    with capture() as cap:
        OpenAIOnFake(base_url=srv.openai_base_url).complete("hi")
    (ix,) = interactions(validate_document(cap.document()))
    assert ix["agent_name"] == "openai:gpt-4o-mini"


def test_uninstall_and_install_mirror(srv: FakeLLM) -> None:
    from llama_index.core.instrumentation import get_dispatcher

    adapter.uninstall()
    try:
        assert adapter.HANDLER not in get_dispatcher().span_handlers
        with capture() as cap:
            SummaryIndex.from_documents([Document(text="x")]).as_query_engine(
                llm=OpenAIOnFake(base_url=srv.openai_base_url)).query("q")
        assert [ix["agent_name"] for ix in interactions(validate_document(cap.document()))] == [
            "openai:gpt-4o-mini"]
    finally:
        adapter.install(llama_index_core)
    assert get_dispatcher().span_handlers.count(adapter.HANDLER) == 1


def test_verbosity_zero_records_nothing(srv: FakeLLM, verbosity: Any) -> None:
    verbosity(0)
    with capture() as cap:
        SummaryIndex.from_documents([Document(text="x")]).as_query_engine(
            llm=OpenAIOnFake(base_url=srv.openai_base_url)).query("q")
    assert list(cap) == [] and adapter.TRACKER.open == {}


SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
{first}
{second}
from fake_llm import FakeLLM
from llama_index.core import Document, SummaryIndex
from test_frameworks_llama_index import OpenAIOnFake

with FakeLLM() as srv:
    engine = SummaryIndex.from_documents([Document(text="x")]).as_query_engine(
        llm=OpenAIOnFake(base_url=srv.openai_base_url))
    print(engine.query("q"))
    print("requests", srv.count())
"""


@pytest.mark.parametrize("agentlog_first", [True, False], ids=["agentlog-first", "sdk-first"])
def test_import_order(run: Any, agentlog_first: bool) -> None:
    sdk = "import llama_index.core"
    first, second = ("import agentlog", sdk) if agentlog_first else (sdk, "import agentlog")
    result = run(SCRIPT.format(tests=str(REPO / "tests"), first=first, second=second))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "requests 1"
    (ix,) = interactions(result.doc())
    assert ix["agent_name"] == "RetrieverQueryEngine" and actions(ix) == ["llm:openai.chat"]
