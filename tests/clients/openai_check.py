"""Drives `profiler serve` with the official openai client (streaming and not, completions
and chat) and prints what it got as one JSON object for tests/serve_http.rs to check.

Usage: openai_check.py BASE_URL   (e.g. http://127.0.0.1:8000/v1; loopback only)
"""
import json
import sys

import openai

base = sys.argv[1]
assert base.startswith("http://127.0.0.1:"), "loopback only"
client = openai.OpenAI(base_url=base, api_key="unused", timeout=300, max_retries=0)
out = {}


def usage(u):
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}


common = dict(model="llama", max_tokens=12, temperature=0)
r = client.completions.create(prompt="The capital of France is", **common)
out["completion"] = {"text": r.choices[0].text, "finish_reason": r.choices[0].finish_reason,
                     "usage": usage(r.usage)}

text, finish, use = "", None, None
for chunk in client.completions.create(prompt="The capital of France is", stream=True,
                                       stream_options={"include_usage": True}, **common):
    if chunk.choices:
        text += chunk.choices[0].text
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        use = usage(chunk.usage)
out["completion_stream"] = {"text": text, "finish_reason": finish, "usage": use}

msgs = [{"role": "user", "content": "Name a colour."}]
r = client.chat.completions.create(messages=msgs, model="smollm2-135m", max_tokens=12,
                                   temperature=0)
out["chat"] = {"text": r.choices[0].message.content, "role": r.choices[0].message.role,
               "finish_reason": r.choices[0].finish_reason, "usage": usage(r.usage)}

text, finish, use, role = "", None, None, None
for chunk in client.chat.completions.create(messages=msgs, model="smollm2-135m",
                                            max_tokens=12, temperature=0, stream=True,
                                            stream_options={"include_usage": True}):
    if chunk.choices:
        d = chunk.choices[0].delta
        role = d.role or role
        text += d.content or ""
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        use = usage(chunk.usage)
out["chat_stream"] = {"text": text, "role": role, "finish_reason": finish, "usage": use}

# A stop string: the second word of the greedy continuation.
words = out["completion"]["text"].split()
stop = words[1] if len(words) > 1 else words[0]
r = client.completions.create(prompt="The capital of France is", stop=[stop], **common)
out["stop"] = {"text": r.choices[0].text, "finish_reason": r.choices[0].finish_reason}
text = ""
for chunk in client.completions.create(prompt="The capital of France is", stop=[stop],
                                       stream=True, **common):
    if chunk.choices:
        text += chunk.choices[0].text
out["stop_stream"] = {"text": text}

out["models"] = [m.id for m in client.models.list().data]
try:
    client.completions.create(prompt="x", model="no-such-model", max_tokens=1)
    out["unknown_model"] = {"status": 200}
except openai.NotFoundError as e:
    out["unknown_model"] = {"status": e.status_code, "message": str(e)}

print(json.dumps(out))
