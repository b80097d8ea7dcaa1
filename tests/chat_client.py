"""Drives upshift's OpenAI-compatible door with the official `openai` SDK.

    python3 tests/chat_client.py <base_url> <api_key> <limited_base_url>

Runs each case and prints one JSON object of what the SDK saw (status,
headers, bodies, raised errors); tests/chat.rs asserts on it, so every
expectation lives in one place. `limited_base_url` is an orchestrator
whose submit rate is one job per second, for the rate-limit case.
"""

import concurrent.futures
import json
import sys

import openai

BOB = "Bob packs 5 boxes with 6 pens each. How many pens does he pack?"
ORANGE = "Name a colour that rhymes with orange."
FAIR = "Extract the city and the year: The fair opened in Paris in 1889."
LIMIT_Q = "Which setting limits how many widgets one session may open at the same time?"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["city", "year"],
}


def upshift_headers(headers):
    return {k: v for k, v in headers.items() if k.lower().startswith("x-upshift-") or k.lower() == "retry-after"}


def raw(client, **kw):
    """A completion with its HTTP status and headers."""
    r = client.chat.completions.with_raw_response.create(**kw)
    c = r.parse()
    return {"status": r.status_code, "headers": upshift_headers(r.headers), "body": c.model_dump()}


def refused(e):
    """What an SDK error carried."""
    out = {"raised": type(e).__name__, "message": str(e)}
    if isinstance(e, openai.APIStatusError):
        out["status"] = e.status_code
        out["headers"] = upshift_headers(e.response.headers)
        try:
            out["body"] = e.response.json()
        except Exception:  # noqa: BLE001 - a body that is not JSON is reported as missing
            out["body"] = None
    elif isinstance(e, openai.APIError):
        out["body"] = e.body
    return out


def case(fn):
    try:
        return fn()
    except openai.OpenAIError as e:
        return refused(e)


def stream(client, **kw):
    chunks = list(client.chat.completions.create(stream=True, **kw))
    return {
        "content": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "finish_reasons": [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason],
        "models": sorted({c.model for c in chunks}),
        "usage": next((c.usage.model_dump() for c in chunks if c.usage), None),
        "last_upshift": next(
            (c.model_extra.get("upshift") for c in reversed(chunks) if c.model_extra and c.model_extra.get("upshift")),
            None,
        ),
    }


def main():
    base, key, limited = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)
    user = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    out = {
        "models": case(lambda: sorted(m.id for m in client.models.list())),
        "complete": case(lambda: raw(client, model="upshift", messages=user(BOB), user="u-42", seed=7)),
        "system": case(
            lambda: raw(
                client,
                model="upshift",
                messages=[{"role": "system", "content": "Be brief."}] + user(BOB),
            )
        ),
        "stream": case(
            lambda: stream(client, model="upshift", messages=user(BOB), stream_options={"include_usage": True})
        ),
        "unresolved": case(lambda: raw(client, model="upshift", messages=user(ORANGE))),
        "unresolved_answer": case(
            lambda: raw(
                client, model="upshift", messages=user(ORANGE), extra_headers={"x-upshift-unresolved": "answer"}
            )
        ),
        "unresolved_stream": case(lambda: stream(client, model="upshift", messages=user(ORANGE))),
        "limits": case(
            lambda: raw(
                client,
                model="upshift",
                messages=user(BOB),
                stop=["####"],
                max_tokens=64,
                extra_headers={"x-upshift-unresolved": "answer"},
            )
        ),
        "budget": case(
            lambda: raw(client, model="upshift", messages=user(BOB), extra_body={"upshift": {"budget_usd": 1e-9}})
        ),
        "schema": case(
            lambda: raw(
                client,
                model="upshift",
                messages=user(FAIR),
                response_format={"type": "json_schema", "json_schema": {"name": "fair", "schema": SCHEMA}},
            )
        ),
        "rag": case(lambda: raw(client, model="upshift-rag/widgets", messages=user(LIMIT_Q))),
        "no_model": case(lambda: raw(client, model="gpt-4o", messages=user(BOB))),
        "no_collection": case(lambda: raw(client, model="upshift-rag/nope", messages=user(LIMIT_Q))),
        "bad_param": case(lambda: raw(client, model="upshift", messages=user(BOB), temperature=9)),
        "bad_key": case(
            lambda: openai.OpenAI(base_url=base + "/v1", api_key="sk-wrong", max_retries=0).models.list().data
        ),
    }
    slow = openai.OpenAI(base_url=limited + "/v1", api_key=key, max_retries=0, timeout=120)
    # At once, so that all but one arrive within the second one token buys.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        tries = [pool.submit(case, lambda: raw(slow, model="upshift", messages=user(BOB))) for _ in range(4)]
        out["rate_limit"] = [t.result() for t in tries]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
