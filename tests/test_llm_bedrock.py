"""What agentlog records for Amazon Bedrock Runtime calls made with boto3.

The real boto3 client reaches ``tests/fake_bedrock.py`` through ``endpoint_url=`` with
explicit credentials (and ``AWS_EC2_METADATA_DISABLED``, so botocore never looks for
instance credentials): ``converse``, ``converse_stream`` (AWS binary event stream),
``invoke_model`` and ``invoke_model_with_response_stream``. One record per request the
server received; other AWS operations pass through unrecorded.

Covers A3: a ConverseStream stays boto3's dict holding botocore's ``EventStream``; one
record per stream, closed at its end.
Covers A4: an event stream closed early, or left by ``break``, is recorded as incomplete;
a connection cut mid-stream is an incomplete record with the error.
Covers A5: boto3's response dict and ``invoke_model``'s unread body reach the caller
unchanged (the body is still readable in full).
Covers A7: botocore imported before agentlog is still recorded.
Covers D1: the client's AWS secret key never reaches the document, even quoted in a prompt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # before botocore reads it

boto3 = pytest.importorskip("boto3")

from botocore.eventstream import EventStream  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402

from agentlog.testing import capture  # noqa: E402
from fake_bedrock import CLAUDE, NOVA, SECRET_KEY, FakeBedrock, Reply, bedrock_client  # noqa: E402
from helpers import validate_document  # noqa: E402
from llm_testing import folded, llm_records, on_and_off, usage  # noqa: E402

MSGS = [{"role": "user", "content": [{"text": "What is four plus five?"}]}]
SYSTEM = [{"text": "Be brief."}]
TOOLS = {"tools": [{"toolSpec": {"name": "get_weather",
                                 "inputSchema": {"json": {"type": "object"}}}}]}
WEATHER = ("get_weather", '{"city": "Paris"}')
ANTHROPIC_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
                             "messages": [{"role": "user", "content": "hi there"}]})
USAGE_5_6 = usage(5, 6)


@pytest.fixture
def srv() -> Iterator[FakeBedrock]:
    with FakeBedrock() as server:
        yield server
    assert not server.errors


@pytest.fixture
def client(srv: FakeBedrock) -> Iterator[Any]:
    c = bedrock_client(srv)
    yield c
    c.close()


def only(cap: Any, srv: FakeBedrock, operation: str) -> dict[str, Any]:
    assert srv.count() == srv.count(operation) == 1
    doc, (record,) = folded(cap, 1)
    assert doc["error_log"] == [] and "error" not in record
    return record


def test_converse(srv: FakeBedrock, client: Any) -> None:
    """Converse: provider aws-bedrock, the model id, system + messages as input, usage and
    a cost (genai-prices knows Bedrock's Claude), the inference config as params."""
    with capture() as cap:
        r = client.converse(modelId=CLAUDE, messages=MSGS, system=SYSTEM,
                            inferenceConfig={"maxTokens": 50, "temperature": 0.1})
    assert type(r) is dict and r["stopReason"] == "end_turn"
    record = only(cap, srv, "Converse")
    llm = record["llm"]
    assert record["agent_name"] == f"aws-bedrock:{CLAUDE}"
    assert (llm["provider"], llm["operation"], llm["request_model"]) == (
        "aws-bedrock", "chat", CLAUDE)
    assert record["input_data"] == [{"role": "system", "content": SYSTEM}, *MSGS]
    assert record["output_data"] == {"role": "assistant",
                                     "content": r["output"]["message"]["content"][0]["text"]}
    assert llm["usage"] == {**USAGE_5_6, "input_tokens": r["usage"]["inputTokens"]} and \
        r["usage"]["inputTokens"] == 7
    assert llm["cost_usd"] > 0
    assert llm["params"] == {"maxTokens": 50, "temperature": 0.1}
    assert llm["finish_reasons"] == ["end_turn"] and llm["streamed"] is False
    assert llm["response_id"] == r["ResponseMetadata"]["RequestId"]
    assert llm["server_address"] == srv.url.removeprefix("http://")


def test_converse_stream(srv: FakeBedrock, client: Any) -> None:
    """ConverseStream: the dict and its EventStream are boto3's; one record at the end,
    with ttft and the usage of the metadata event; Nova is priced too."""
    with capture() as cap:
        r = client.converse_stream(modelId=NOVA, messages=MSGS)
        assert type(r["stream"]) is EventStream and set(r) == {"ResponseMetadata", "stream"}
        events = list(r["stream"])
    record = only(cap, srv, "ConverseStream")
    llm = record["llm"]
    assert llm["streamed"] is True and llm["incomplete"] is False
    assert llm["ttft_ms"] is not None
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events
                   if "contentBlockDelta" in e)
    assert record["output_data"] == {"role": "assistant", "content": text}
    assert text == "echo: What is four plus five?"
    assert llm["usage"] == USAGE_5_6 and llm["cost_usd"] > 0
    assert llm["finish_reasons"] == ["end_turn"]


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_tool_call(srv: FakeBedrock, client: Any, streamed: bool) -> None:
    srv.script(Reply(tool_calls=[WEATHER]))
    with capture() as cap:
        if streamed:
            list(client.converse_stream(modelId=CLAUDE, messages=MSGS,
                                        toolConfig=TOOLS)["stream"])
        else:
            client.converse(modelId=CLAUDE, messages=MSGS, toolConfig=TOOLS)
    record = only(cap, srv, "ConverseStream" if streamed else "Converse")
    llm = record["llm"]
    assert json.loads(llm["tool_calls"][0].pop("arguments")) == json.loads(WEATHER[1])
    assert llm["tool_calls"] == [{"id": "tooluse_0", "name": "get_weather"}]
    assert llm["finish_reasons"] == ["tool_use"] and llm["params"] == {"tools": ["get_weather"]}


@pytest.mark.parametrize("headers", [True, False], ids=["usage", "no-usage"])
def test_invoke_model(srv: FakeBedrock, client: Any, headers: bool) -> None:
    """InvokeModel: usage from Bedrock's token-count headers; the body is left to the
    caller, who still reads all of it."""
    srv.script(Reply(usage_headers=headers))
    with capture() as cap:
        r = client.invoke_model(modelId=CLAUDE, body=ANTHROPIC_BODY)
    assert type(r["body"]) is StreamingBody
    assert json.loads(r["body"].read())["content"][0]["text"] == "echo: hi there"
    record = only(cap, srv, "InvokeModel")
    llm = record["llm"]
    assert llm["operation"] == "invoke_model"
    assert record["input_data"] == [{"role": "user", "content": "hi there"}]
    assert llm["params"] == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50}
    if headers:
        assert llm["usage"]["input_tokens"] == 2 and llm["usage"]["output_tokens"] == 3
        assert llm["cost_usd"] > 0
    else:
        assert llm["usage"] is None and "token-count headers" in llm["usage_missing_reason"]


def test_invoke_model_with_response_stream(srv: FakeBedrock, client: Any) -> None:
    with capture() as cap:
        r = client.invoke_model_with_response_stream(modelId=CLAUDE, body=ANTHROPIC_BODY)
        assert type(r["body"]) is EventStream
        chunks = list(r["body"])
    assert len(chunks) == 8
    record = only(cap, srv, "InvokeModelWithResponseStream")
    llm = record["llm"]
    assert record["output_data"] == {"role": "assistant", "content": "echo: hi there"}
    assert llm["response_model"] == "claude-3-haiku-20240307"
    assert llm["usage"]["input_tokens"] == 2 and llm["usage"]["output_tokens"] == 3
    assert llm["finish_reasons"] == ["end_turn"] and llm["ttft_ms"] is not None


@pytest.mark.parametrize("how", ["close", "break"])
def test_stream_left_early(srv: FakeBedrock, client: Any, how: str) -> None:
    """``close()`` on the EventStream, or leaving the loop: one incomplete record."""
    with capture() as cap:
        stream = client.converse_stream(modelId=CLAUDE, messages=MSGS)["stream"]
        if how == "close":
            events = iter(stream)
            next(events)
            stream.close()
        else:
            for _ in stream:
                break
    (record,) = llm_records(validate_document(cap.document()))
    assert srv.count() == 1
    assert record["llm"]["incomplete"] is True and record["llm"]["ttft_ms"] is not None
    assert record["llm"]["incomplete_reason"] == (
        "closed before its end" if how == "close"
        else "the stream was garbage-collected before its end")
    stream.close()  # the connection, which a stream left unclosed keeps


def test_stream_cut_by_the_server(srv: FakeBedrock, client: Any) -> None:
    """A connection cut mid-stream: botocore's exception reaches the caller; the record is
    incomplete and holds it."""
    srv.script(Reply(drop_after=3))
    with capture() as cap:
        stream = client.converse_stream(modelId=CLAUDE, messages=MSGS)["stream"]
        with pytest.raises(Exception) as info:
            list(stream)
    doc = validate_document(cap.document())
    (record,) = llm_records(doc)
    assert record["llm"]["incomplete"] is True and record["llm"]["incomplete_reason"] == "error"
    assert record["error"]["type"].endswith(type(info.value).__name__)


def test_http_error(srv: FakeBedrock, client: Any) -> None:
    """The service's error is raised to the caller as botocore made it; the record holds
    the status."""
    srv.script(Reply(status=400))
    with capture() as cap, pytest.raises(client.exceptions.ValidationException) as info:
        client.converse(modelId=CLAUDE, messages=MSGS)
    doc, (record,) = folded(cap, 1)
    assert srv.count() == 1
    assert record["llm"]["http_status"] == 400
    assert record["error"]["type"].endswith("ValidationException")
    assert doc["error_log"][0]["error"] == str(info.value)
    del info  # its traceback holds botocore's connection (a cycle through this frame)


def test_other_operations_pass_through(srv: FakeBedrock) -> None:
    """Another AWS service through the same choke point: no record, its error unchanged."""
    s3 = boto3.client("s3", endpoint_url=srv.url, region_name="us-east-1",
                      aws_access_key_id="AKIAOTHER", aws_secret_access_key="other-secret")
    try:
        with capture() as cap, pytest.raises(s3.exceptions.ClientError):
            s3.list_buckets()
    finally:
        s3.close()
    assert srv.count() == 1
    assert validate_document(cap.document())["iterations"] == []


def test_verbosity_0_records_nothing(srv: FakeBedrock, client: Any, verbosity: Any) -> None:
    verbosity(0)
    with capture() as cap:
        client.converse(modelId=CLAUDE, messages=MSGS)
        list(client.converse_stream(modelId=CLAUDE, messages=MSGS)["stream"])
    assert srv.count() == 2
    assert validate_document(cap.document())["iterations"] == []


def test_no_secret_key_in_document(srv: FakeBedrock, client: Any) -> None:
    """The AWS secret key never reaches the document, even when the caller prints it into
    the prompt."""
    said = [{"role": "user", "content": [{"text": f"my key is {SECRET_KEY}"}]}]
    with capture() as cap:
        client.converse(modelId=CLAUDE, messages=said)
    doc = validate_document(cap.document())
    assert len(llm_records(doc)) == 1
    assert SECRET_KEY not in json.dumps(doc)


def test_boto3_first_no_network_and_disable(tmp_path: Path) -> None:
    """boto3 imported (and a client made) before agentlog is recorded, nothing leaves
    loopback; AGENTLOG_DISABLE=bedrock records nothing and leaves botocore unpatched."""
    tests = os.path.dirname(__file__)
    source = f"""
sys.path.insert(0, {tests!r})
import boto3, botocore.client
from fake_bedrock import FakeBedrock, bedrock_client, CLAUDE
with FakeBedrock() as srv:
    client = bedrock_client(srv)
    import agentlog
    msgs = [{{"role": "user", "content": [{{"text": "hi"}}]}}]
    client.converse(modelId=CLAUDE, messages=msgs)
    list(client.converse_stream(modelId=CLAUDE, messages=msgs)["stream"])
    client.close()
    print("requests", srv.count())
call = botocore.client.BaseClient._make_api_call
print("patched", getattr(call, "__agentlog_patched__", False))
print("outside", outside)
"""
    on_and_off(tmp_path, source, "bedrock", 120, AWS_EC2_METADATA_DISABLED="true")
