"""Audio and image tokens: their own classes from every source that reports them, priced at the
model's rates for them (the text rate where a model has none), never dropped."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from costwarden.connectors.gemini import parse as parse_gemini
from costwarden.connectors.litellm import parse as parse_litellm
from costwarden.connectors.openai import parse_response_usage, parse_usage
from costwarden.connectors.otlp import parse as parse_otlp
from costwarden.money import to_nanos
from costwarden.streams.catalogue import PriceCatalogue

CAT = PriceCatalogue.default()
WHEN = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
M = Decimal(1_000_000)


def usd(*pairs: tuple[int, str]) -> int:
    """Nanos of sum(tokens x USD per 1M)."""
    return to_nanos(sum(n * Decimal(rate) for n, rate in pairs) / M)


def classes(t) -> tuple[int, ...]:
    return (t.input, t.cache_read, t.input_audio, t.input_image, t.output, t.output_audio, t.output_image)


def test_openai_usage_api_keeps_audio_apart_from_text_and_prices_it_at_the_audio_rate():
    page = {"object": "page", "data": [{
        "object": "bucket", "start_time": 1763596800, "end_time": 1763683200, "results": [{
            "object": "organization.usage.completions.result", "model": "gpt-audio", "num_model_requests": 12,
            "input_tokens": 1_000, "input_cached_tokens": 200, "input_audio_tokens": 4_000,
            "output_tokens": 300, "output_audio_tokens": 600, "project_id": None, "user_id": None,
            "api_key_id": None, "batch": None}]}], "has_more": False, "next_page": None}
    r = parse_usage(page)
    assert r.rejects == []
    (ev,) = r.events
    # before: input 800, cache_read 200, output 300, and the 4,600 audio tokens were gone
    assert classes(ev.tokens) == (800, 200, 4_000, 0, 300, 600, 0)
    p = CAT.price(ev)
    # gpt-audio: text in $2.50, out $10; audio in $32, out $64 (per 1M); no cached rate: input rate
    assert p.cost_nanos == usd((800, "2.5"), (200, "2.5"), (4_000, "32"), (300, "10"), (600, "64"))
    assert p.breakdown["input_audio"] == Decimal(4_000) * Decimal(32) / M


def test_openai_chat_completion_audio_details_are_taken_out_of_prompt_and_completion():
    body = {"id": "chatcmpl-a1", "object": "chat.completion", "created": 1763640000, "model": "gpt-audio",
            "usage": {"prompt_tokens": 1_500, "completion_tokens": 900, "total_tokens": 2_400,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 1_200},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 700}}}
    (ev,) = parse_response_usage(body).events
    assert classes(ev.tokens) == (300, 0, 1_200, 0, 200, 700, 0)
    assert CAT.price(ev).cost_nanos == usd((300, "2.5"), (1_200, "32"), (200, "10"), (700, "64"))


def test_an_images_api_response_bills_its_output_as_image_tokens():
    body = {"created": 1763640000, "data": [{"b64_json": "..."}], "size": "1024x1024", "quality": "high",
            "usage": {"total_tokens": 4_660, "input_tokens": 500, "output_tokens": 4_160,
                      "input_tokens_details": {"text_tokens": 100, "image_tokens": 400}}}
    (ev,) = parse_response_usage(body, model="gpt-image-1", event_id="img-1").events  # no id in the body
    assert classes(ev.tokens) == (100, 0, 0, 400, 0, 0, 4_160)
    assert ev.operation == "image_generation"
    # gpt-image-1: text in $5, image in $10, image out $40 (its output rate)
    assert CAT.price(ev).cost_nanos == usd((100, "5"), (400, "10"), (4_160, "40"))


def test_gemini_modality_details_split_audio_and_image_and_cached_audio_stays_cached():
    rec = {"responseId": "g1", "modelVersion": "gemini-2.5-flash", "createTime": "2026-11-20T12:00:00Z",
           "usageMetadata": {
               "promptTokenCount": 3_000, "cachedContentTokenCount": 500, "candidatesTokenCount": 400,
               "totalTokenCount": 3_400,
               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1_000},
                                       {"modality": "AUDIO", "tokenCount": 1_800},
                                       {"modality": "IMAGE", "tokenCount": 200}],
               "cacheTokensDetails": [{"modality": "AUDIO", "tokenCount": 500}],
               "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 400}]}}
    (ev,) = parse_gemini(rec).events
    assert classes(ev.tokens) == (1_000, 500, 1_300, 200, 400, 0, 0)
    # gemini-2.5-flash: text/image in $0.30, audio in $1.00, cached $0.03, out $2.50
    assert CAT.price(ev).cost_nanos == usd((1_000, "0.30"), (500, "0.03"), (1_300, "1.00"), (200, "0.30"),
                                            (400, "2.50"))
    image_out = {"responseId": "g2", "modelVersion": "gemini-2.5-flash-image", "createTime": "2026-11-20T12:00:00Z",
                 "usage_metadata": {"prompt_token_count": 20, "candidates_token_count": 1_310,
                                    "candidates_tokens_details": [{"modality": "IMAGE", "token_count": 1_290},
                                                                  {"modality": "TEXT", "token_count": 20}]}}
    (ev,) = parse_gemini(image_out).events  # python-genai's snake_case dump
    assert classes(ev.tokens) == (20, 0, 0, 0, 20, 0, 1_290)
    assert CAT.price(ev).cost_nanos == usd((20, "0.30"), (20, "2.5"), (1_290, "30"))


def test_inconsistent_modality_counts_are_rejected_with_the_reason_and_neighbours_kept():
    good = {"responseId": "ok", "modelVersion": "gemini-2.5-flash", "createTime": "2026-11-20T12:00:00Z",
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5}}
    bad = {"responseId": "bad", "modelVersion": "gemini-2.5-flash", "createTime": "2026-11-20T12:00:00Z",
           "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                             "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 50}]}}
    r = parse_gemini([good, bad])
    assert [e.event_id for e in r.events] == ["gemini:ok"]
    assert len(r.rejects) == 1 and r.rejects[0].reason == "inconsistent"
    chat = {"id": "c", "created": 1763640000, "model": "gpt-audio",
            "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                      "completion_tokens_details": {"audio_tokens": 9}}}
    r = parse_response_usage(chat)
    assert r.events == [] and r.rejects[0].reason == "inconsistent"


def test_litellm_usage_object_audio_details():
    rec = {"id": "l1", "call_type": "acompletion", "status": "success", "custom_llm_provider": "openai",
           "model": "gpt-4o-mini-realtime-preview", "prompt_tokens": 2_000, "completion_tokens": 500,
           "startTime": 1763640000.0, "endTime": 1763640001.0,
           "metadata": {"usage_object": {"prompt_tokens": 2_000, "completion_tokens": 500,
                                         "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 1_500},
                                         "completion_tokens_details": {"audio_tokens": 450}}}}
    r = parse_litellm(rec)
    assert r.rejects == [], r.rejects
    (ev,) = r.events
    assert classes(ev.tokens) == (400, 100, 1_500, 0, 50, 450, 0)
    # gpt-4o-mini-realtime-preview: in $0.60, cached $0.30, out $2.40, audio in $10, audio out $20
    assert CAT.price(ev).cost_nanos == usd((400, "0.6"), (100, "0.3"), (1_500, "10"), (50, "2.4"), (450, "20"))


def test_otlp_openinference_audio_counts_come_out_of_the_gen_ai_totals():
    def attr(k, v):
        return {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "chat", "startTimeUnixNano": "1763640000000000000",
            "attributes": [attr("gen_ai.provider.name", "openai"), attr("gen_ai.response.model", "gpt-audio"),
                           attr("gen_ai.usage.input_tokens", 1_000), attr("gen_ai.usage.output_tokens", 800),
                           attr("llm.token_count.prompt_details.audio", 600),
                           attr("llm.token_count.completion_details.audio", 500)]}
    body = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [span]}]}]}
    (ev,) = parse_otlp(body).events
    assert classes(ev.tokens) == (400, 0, 600, 0, 300, 500, 0)
    assert CAT.price(ev).cost_nanos == usd((400, "2.5"), (600, "32"), (300, "10"), (500, "64"))


def test_a_model_without_an_audio_rate_charges_audio_at_its_text_rate():
    body = {"id": "c2", "created": 1763640000, "model": "gpt-4o-mini",
            "usage": {"prompt_tokens": 1_000, "completion_tokens": 100,
                      "prompt_tokens_details": {"audio_tokens": 400}}}
    (ev,) = parse_response_usage(body).events
    assert classes(ev.tokens) == (600, 0, 400, 0, 100, 0, 0)
    assert CAT.price(ev).cost_nanos == usd((1_000, "0.15"), (100, "0.60"))
