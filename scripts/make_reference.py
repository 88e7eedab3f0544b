"""Reference fixtures for the correctness tests: Hugging Face transformers on the default model.

Run by hand when the model, the prompts or the reference stack change; the result is committed:

    scripts/make_reference.sh                   # throw-away venv, then this script, defaults below
    python scripts/make_reference.py [--model FILE.gguf] [--out tests/fixtures/reference.json]

(the venv needs transformers, gguf, accelerate and numpy next to torch; make_reference.sh pins them).

What it does, all on the CPU in float32:
  * loads the GGUF with transformers (`AutoTokenizer` / `AutoModelForCausalLM`, `gguf_file=`),
    which dequantises every tensor to float32, with eager attention;
  * for each case, tokenises the exact text fed (the prompt, or the prompt passed through the
    tokenizer's chat template with add_generation_prompt=True) as `tokenizer(text)` does, then
    runs its own greedy loop on the model's forward with a KV cache: argmax at every step,
    end-of-sequence never stops it, so every case has exactly --steps tokens;
  * records per case: prompt ids, greedy ids and their decoded text (special tokens kept),
    top-1 minus top-2 logit at every step (small gaps are where float error may flip a token),
    the top 5 logits of the first step and the first step's logits at 20 fixed ids;
  * a batch section: two prompts of different lengths run as one left-padded batch (attention
    mask, position ids counted from each row's first real token, as `generate` does), each
    row's --batch-steps greedy ids, and whether they equal the same prompt run alone.

Writes one JSON object (see the keys below) to --out.
"""

import argparse
import hashlib
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, ".cache", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "reference.json")

LONG_TEXT = """\
The town of Harrowmere sits at the mouth of a slow grey river, where the water spreads out \
across a wide bed of mud and reeds before it reaches the sea. For most of its history the town \
lived on fishing and on the small trade that came down the river on flat-bottomed boats: grain \
in the autumn, timber in the spring, and wool whenever the prices in the city were good enough \
to make the journey worth the trouble.

The lighthouse on the northern point was built in the year the old harbour wall collapsed \
during a winter storm. Before that, ships coming in at night relied on a lantern that the \
harbour master hung from the window of his own house, and more than one captain mistook the \
light of a tavern for it. The new tower was made of local stone, forty feet high, with a lamp \
that burned whale oil and later paraffin. Three families kept it in turn over a century and a \
half, and each of them left a logbook full of weather, ship names and small complaints about \
the cost of wicks.

In the early years of the railway the town changed quickly. A branch line reached the harbour, \
a canning factory opened beside the station, and for a decade the population nearly doubled. \
Then the fish moved further out, the factory closed, and the young people left for the city, \
as young people from small towns always have.

Today Harrowmere is quiet again. The lighthouse is automatic, the logbooks sit in a glass case \
in the library, and in summer the visitors walk out along the rebuilt wall to watch the tide \
come in across the mud. Most of them do not know that the wall they are standing on was \
rebuilt three times, or that the river once carried half the wool of the county down to the \
sea. They look at the water, buy an ice cream, and go home before the evening fog rolls in."""

CASES = [
    {"name": "prose", "chat": False, "prompt": "The history of the printing press began in"},
    {
        "name": "code",
        "chat": False,
        "prompt": 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    },
    {
        "name": "digits",
        "chat": False,
        "prompt": "Question: What is 17 * 23 + 1024 - 365?\nAnswer: 17 * 23 = 391, and 391 + 1024 = 1415, so",
    },
    {
        "name": "unicode",
        "chat": False,
        "prompt": "Café crème, naïve façade, Ελληνικά — 東京の天気は晴れです。数学很有趣！ 🙂🚀🌊 The sea is",
    },
    {"name": "long", "chat": False, "prompt": LONG_TEXT},
    {"name": "chat", "chat": True, "prompt": "Write a haiku about the sea."},
    {"name": "short", "chat": False, "prompt": "Hello"},
]

BATCH_PROMPTS = ["The capital of France is", "Once upon a time, in a small village by the sea, there lived"]

# Ids whose first-step logits are recorded besides the top 5: specials, common and rare tokens.
SAMPLE_IDS = [0, 1, 2, 17, 198, 216, 260, 1000, 2000, 5000, 10000, 15000, 20000, 25000, 30000, 35000, 40000, 45000, 49000, 49151]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r(x):
    """A float32 logit as a short JSON number."""
    return round(float(x), 5)


def cache_of(out):
    """The KV cache of a forward's output, as the next forward's keyword (renamed in transformers 5)."""
    if getattr(out, "cache", None) is not None:
        return {"cache": out.cache}
    return {"past_key_values": out.past_key_values}


@torch.no_grad()
def greedy(model, ids, steps):
    """Greedy ids, top-2 gaps and first-step logits for one unpadded prompt; EOS never stops it."""
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    logits = out.logits[0, -1].float()
    first = logits.clone()
    tokens, gaps = [], []
    for step in range(steps):
        top2 = torch.topk(logits, 2).values
        nxt = int(torch.argmax(logits))
        tokens.append(nxt)
        gaps.append(r(top2[0] - top2[1]))
        if step + 1 < steps:
            out = model(input_ids=torch.tensor([[nxt]]), use_cache=True, **cache_of(out))
            logits = out.logits[0, -1].float()
    return tokens, gaps, first


@torch.no_grad()
def greedy_batch(model, rows, pad_id, steps):
    """Greedy ids for left-padded rows run together, with generate's mask and position ids."""
    width = max(len(x) for x in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(x)) + x for x in rows])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in rows])
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=True)
    tokens = [[] for _ in rows]
    gaps = [[] for _ in rows]
    for step in range(steps):
        logits = out.logits[:, -1].float()
        top2 = torch.topk(logits, 2, dim=-1).values
        nxt = torch.argmax(logits, dim=-1)
        for i in range(len(rows)):
            tokens[i].append(int(nxt[i]))
            gaps[i].append(r(top2[i, 0] - top2[i, 1]))
        if step + 1 < steps:
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=-1)
            pos = pos[:, -1:] + 1
            out = model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                **cache_of(out),
            )
    return input_ids.tolist(), mask[:, :width].tolist(), tokens, gaps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="GGUF file (default: the project's default model)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="JSON file to write")
    ap.add_argument("--steps", type=int, default=32, help="greedy steps per case")
    ap.add_argument("--batch-steps", type=int, default=8, help="greedy steps per batch row")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()

    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    folder, name = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()

    cases = []
    for case in CASES:
        if case["chat"]:
            messages = [{"role": "user", "content": case["prompt"]}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = case["prompt"]
        ids = tok(text)["input_ids"]
        tokens, gaps, first = greedy(model, ids, args.steps)
        top5 = torch.topk(first, 5)
        sample = [int(i) for i in top5.indices]
        sample += [i for i in SAMPLE_IDS if i not in sample][: 20 - len(sample)]
        cases.append(
            {
                "name": case["name"],
                "prompt": case["prompt"],
                "chat": case["chat"],
                "text_fed": text,
                "prompt_tokens": ids,
                "greedy_tokens": tokens,
                "greedy_text": tok.decode(tokens),
                "top2_gap": gaps,
                "first_step_top5": [{"id": int(i), "logit": r(v)} for v, i in zip(top5.values, top5.indices)],
                "first_step_logits_sample": {"ids": sample, "logits": [r(first[i]) for i in sample]},
            }
        )
        print(f"{case['name']}: {len(ids)} prompt tokens, min top-2 gap {min(gaps):.4f}: {tok.decode(tokens)!r}")

    rows = [tok(p)["input_ids"] for p in BATCH_PROMPTS]
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    padded, mask, batch_tokens, batch_gaps = greedy_batch(model, rows, pad_id, args.batch_steps)
    alone = [greedy(model, ids, args.batch_steps)[0] for ids in rows]
    batch = {
        "prompts": BATCH_PROMPTS,
        "pad_id": pad_id,
        "input_ids": padded,
        "attention_mask": mask,
        "greedy_tokens": batch_tokens,
        "greedy_text": [tok.decode(t) for t in batch_tokens],
        "top2_gap": batch_gaps,
        "unbatched_tokens": alone,
        "equal_to_unbatched": [a == b for a, b in zip(batch_tokens, alone)],
    }
    print(f"batch: equal to unbatched {batch['equal_to_unbatched']}")

    doc = {
        "generator": "scripts/make_reference.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__.split("+")[0],
        "gguf_file": name,
        "gguf_sha256": sha256(args.model),
        "dtype": "float32",
        "attention": "eager",
        "notes": [
            "prompt_tokens are tokenizer(text_fed)['input_ids']: this GGUF sets add_bos_token false, so no BOS is added",
            "greedy_tokens: argmax at each step with a KV cache; end-of-sequence does not stop generation",
            "greedy_text: decode(greedy_tokens) with special tokens kept",
            "top2_gap: top-1 minus top-2 logit at each step; a flip is only a real mismatch where the gap is large",
        ],
        "cases": cases,
        "batch": batch,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
