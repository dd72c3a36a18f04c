"""usage_from_response: the canonical usage event from what the official clients return.

The openai, anthropic and google-genai clients are pointed at a local HTTP server that answers
with the providers' documented response bodies (plain and streamed); the objects the clients
build are turned into events with the connectors' token rules, and reported to a real API."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sdk_helpers import wait_for
from costwarden.errors import InvalidEventError
from costwarden.events import Attribution
from costwarden.sdk import Costwarden, usage_from_response

CREATED = 1767225600  # 2026-01-01T00:00:00Z
CHAT = {"id": "chatcmpl-abc", "object": "chat.completion", "created": CREATED, "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500,
                  "prompt_tokens_details": {"cached_tokens": 1024},
                  "completion_tokens_details": {"reasoning_tokens": 100}},
        "service_tier": "default"}
CHAT_CHUNKS = [
    {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": CREATED, "model": "gpt-4o-mini",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}, "finish_reason": None}], "usage": None},
    {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": CREATED, "model": "gpt-4o-mini",
     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None},
    {"id": "chatcmpl-s1", "object": "chat.completion.chunk", "created": CREATED, "model": "gpt-4o-mini",
     "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}},
]
RESPONSE = {"id": "resp_1", "object": "response", "created_at": CREATED, "model": "gpt-4.1-mini",
            "status": "completed", "output": [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": 500, "input_tokens_details": {"cached_tokens": 100}, "output_tokens": 50,
                      "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 550}}
EMBEDDINGS = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
              "model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}}
MESSAGE = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
           "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 20, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 3000,
                     "output_tokens": 150, "service_tier": "standard",
                     "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600}}}
MESSAGE_EVENTS = [
    {"type": "message_start", "message": {"id": "msg_02", "type": "message", "role": "assistant",
                                          "model": "claude-haiku-4-5", "content": [], "stop_reason": None,
                                          "stop_sequence": None, "usage": {"input_tokens": 25, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 15}},
    {"type": "message_stop"},
]
GEMINI = {"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP"}],
          "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 200, "totalTokenCount": 1250,
                            "cachedContentTokenCount": 400, "thoughtsTokenCount": 50, "trafficType": "ON_DEMAND"},
          "modelVersion": "gemini-2.5-flash", "responseId": "resp-g1"}
GEMINI_CHUNKS = [
    {"candidates": [{"content": {"parts": [{"text": "h"}], "role": "model"}}],
     "usageMetadata": {"promptTokenCount": 30, "totalTokenCount": 30}, "modelVersion": "gemini-2.5-flash",
     "responseId": "resp-g2"},
    {"candidates": [{"content": {"parts": [{"text": "i"}], "role": "model"}, "finishReason": "STOP"}],
     "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 7, "totalTokenCount": 37},
     "modelVersion": "gemini-2.5-flash", "responseId": "resp-g2"},
]


class _Provider(BaseHTTPRequestHandler):
    """Answers like api.openai.com, api.anthropic.com and generativelanguage.googleapis.com."""

    def log_message(self, *a) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        path = self.path
        if path.startswith("/v1/chat/completions"):
            return self._sse([(None, c) for c in CHAT_CHUNKS] + [(None, "[DONE]")]) if body.get("stream") \
                else self._json(CHAT)
        if path.startswith("/v1/responses"):
            return self._json(RESPONSE)
        if path.startswith("/v1/embeddings"):
            return self._json(EMBEDDINGS)
        if path.startswith("/v1/messages"):
            return self._sse([(e["type"], e) for e in MESSAGE_EVENTS]) if body.get("stream") else self._json(MESSAGE)
        if ":streamGenerateContent" in path:
            return self._sse([(None, c) for c in GEMINI_CHUNKS])
        if ":generateContent" in path:
            return self._json(GEMINI)
        self.send_error(404)

    def _json(self, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for name, data in events:
            head = f"event: {name}\n" if name else ""
            text = data if isinstance(data, str) else json.dumps(data)
            self.wfile.write(f"{head}data: {text}\n\n".encode())
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def provider():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _tokens(ev) -> dict:
    return ev.tokens.model_dump(exclude_defaults=True)


# --- OpenAI (the openai package: always installed with the test extras, through litellm) -----------

def test_openai_chat_completion_responses_embeddings_and_a_stream(provider):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key="sk-test", base_url=f"{provider}/v1", max_retries=0)
    chat = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    ev = usage_from_response(chat, workflow="support-bot", tags={"team": "search"})
    assert (ev.provider, ev.model, ev.operation, ev.requests) == ("openai", "gpt-4o-mini-2024-07-18", "chat", 1)
    assert _tokens(ev) == {"input": 176, "cache_read": 1024, "output": 300, "reasoning": 100}
    assert ev.event_id == "openai-response:chatcmpl-abc"  # the response id: reported twice, counted once
    assert ev.occurred_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert ev.attribution.tags == {"team": "search", "workflow": "support-bot"}
    assert usage_from_response(chat.model_dump()).tokens == ev.tokens  # the dict form too
    assert usage_from_response(chat.model_dump_json()).tokens == ev.tokens  # and its JSON text

    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    ev = usage_from_response(chunks, workflow="w")
    assert _tokens(ev) == {"input": 10, "output": 2} and ev.event_id == "openai-response:chatcmpl-s1"
    with pytest.raises(InvalidEventError, match="include_usage"):
        usage_from_response(chunks[:2])  # streamed without include_usage: no usage to report

    resp = client.responses.create(model="gpt-4.1-mini", input="hi")
    ev = usage_from_response(resp, workflow="w")
    assert ev.model == "gpt-4.1-mini" and ev.event_id == "openai-response:resp_1"
    assert _tokens(ev) == {"input": 400, "cache_read": 100, "output": 50, "reasoning": 20}

    emb = client.embeddings.create(model="text-embedding-3-small", input="hi")
    ev = usage_from_response(emb, workflow="w", provider="azure")  # Azure OpenAI: the catalogue's alias
    assert (ev.operation, ev.provider, _tokens(ev)) == ("embeddings", "azure", {"input": 8})
    assert ev.event_id.startswith("openai-response:")  # no id in an embeddings response: a random one
    assert usage_from_response(emb).event_id != ev.event_id
    assert usage_from_response(emb, event_id="my-retry-safe-id").event_id == "my-retry-safe-id"


# --- Anthropic ------------------------------------------------------------------------------------

def test_anthropic_message_final_message_of_a_stream_and_raw_stream_events(provider):
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=provider, max_retries=0)
    msg = client.messages.create(model="claude-sonnet-4-5", max_tokens=100,
                                 messages=[{"role": "user", "content": "hi"}])
    before = datetime.now(timezone.utc)
    ev = usage_from_response(msg, workflow="agent", attribution={"api_key_id": "key-7"})
    assert (ev.provider, ev.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    assert ev.event_id == "anthropic-message:msg_01"
    assert _tokens(ev) == {"input": 20, "cache_read": 3000, "cache_write": 400, "cache_write_1h": 600, "output": 150}
    assert ev.attribution.api_key_id == "key-7" and ev.attribution.tags == {"workflow": "agent"}
    assert ev.occurred_at >= before.replace(microsecond=0)  # messages carry no time: now
    when = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    assert usage_from_response(msg, occurred_at=when).occurred_at == when

    with client.messages.stream(model="claude-haiku-4-5", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        final = stream.get_final_message()
    ev = usage_from_response(final, workflow="agent")
    assert ev.event_id == "anthropic-message:msg_02" and _tokens(ev) == {"input": 25, "output": 15}

    events = list(client.messages.create(model="claude-haiku-4-5", max_tokens=100, stream=True,
                                         messages=[{"role": "user", "content": "hi"}]))
    ev = usage_from_response(events, workflow="agent", provider="aws.bedrock")
    assert ev.provider == "aws.bedrock" and _tokens(ev) == {"input": 25, "output": 15}  # cumulative, not summed


# --- Gemini: the REST JSON (always), and google-genai's objects where the package is installed ------

def test_gemini_rest_json_and_python_genai_dict_form():
    ev = usage_from_response(GEMINI, workflow="summarise")
    assert (ev.provider, ev.model, ev.event_id) == ("gcp.gemini", "gemini-2.5-flash", "gemini:resp-g1")
    assert _tokens(ev) == {"input": 600, "cache_read": 400, "output": 250, "reasoning": 50}
    snake = {"usage_metadata": {"prompt_token_count": 1000, "candidates_token_count": 200, "total_token_count": 1250,
                                "cached_content_token_count": 400, "thoughts_token_count": 50},
             "model_version": "gemini-2.5-flash", "response_id": "resp-g1",
             "create_time": "2026-01-01T00:00:00Z"}  # what google-genai's model_dump gives (Vertex sets create_time)
    ev2 = usage_from_response(snake, provider="vertex_ai")
    assert ev2.provider == "gcp.vertex_ai" and ev2.tokens == ev.tokens
    assert ev2.occurred_at == datetime(2026, 1, 1, tzinfo=timezone.utc)
    ev3 = usage_from_response(GEMINI_CHUNKS)  # the chunks of one stream: the last usage wins
    assert _tokens(ev3) == {"input": 30, "output": 7} and ev3.event_id == "gemini:resp-g2"
    with pytest.raises(InvalidEventError) as e:
        usage_from_response({**GEMINI, "usageMetadata": {**GEMINI["usageMetadata"], "totalTokenCount": 9}})
    assert e.value.reason == "inconsistent"  # a mismatch would mis-price: rejected with the reason


def test_gemini_google_genai_client_objects(provider):
    pytest.importorskip("google.genai")
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="test", http_options=types.HttpOptions(base_url=provider))
    resp = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    ev = usage_from_response(resp, workflow="summarise")
    assert (ev.provider, ev.model, ev.event_id) == ("gcp.gemini", "gemini-2.5-flash", "gemini:resp-g1")
    assert _tokens(ev) == {"input": 600, "cache_read": 400, "output": 250, "reasoning": 50}
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert _tokens(usage_from_response(chunks)) == {"input": 30, "output": 7}


def test_no_usable_usage_raises_with_the_reason():
    with pytest.raises(InvalidEventError) as e:
        usage_from_response({"id": "chatcmpl-x", "object": "chat.completion", "created": CREATED, "model": "m"})
    assert e.value.reason == "missing_field"
    with pytest.raises(InvalidEventError) as e:
        usage_from_response(object())
    assert e.value.reason == "not_an_object"
    with pytest.raises(InvalidEventError):
        usage_from_response(GEMINI, provider="openai")  # not a Gemini provider


def test_reported_responses_are_priced_and_enforced_by_the_api(provider, sdk_api):
    openai = pytest.importorskip("openai")
    api = sdk_api()
    guard = Costwarden(api.url, api.tokens["gateway"])
    try:
        assert guard.wait_ready(10) and guard.check("lite-agent").allowed
        chat = openai.OpenAI(api_key="sk-test", base_url=f"{provider}/v1", max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        now = datetime.now(timezone.utc)  # the canned response was created on 2026-01-01: today's budget
        ev = usage_from_response(chat, workflow="lite-agent", attribution=Attribution(project_id="p1"), occurred_at=now)
        assert guard.report(ev)
        assert guard.report_response(chat, workflow="lite-agent", occurred_at=now)  # again: counted once
        assert guard.report_response(GEMINI, workflow="rag")
        assert guard.flush(10)
        s = guard.stats
        assert s["sent"] == 3 and s["rejected"] == 0 and s["last_error"] is None
        # the hard budget of lite-agent ($0.000001) was crossed by the priced call: the guard blocks it
        assert wait_for(lambda: guard.check("lite-agent").action == "block", 5)
        spend = api.client("admin").get("/v1/budgets/lite-cap").json()
        # gpt-4o-mini, once: 176 x $0.15 + 1024 cached x $0.075 + 300 out x $0.60 per M = $0.0002832
        assert spend["spend_usd"] == "0.000283200"
    finally:
        guard.close()
