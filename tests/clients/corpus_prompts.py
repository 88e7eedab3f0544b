"""Prompts cut from the shipped corpus (models/corpus.txt) for the load generators, each with
a token count of its own (no two prompts of the same length, so a request of the client's
report and a line of the server's samples file can be paired by their prompt length) and
an output length to request with `ignore_eos`.

`write(tokenizer_dir, corpus, n, seed, out_dir)` writes out_dir/requests.jsonl, one line per
prompt: {"prompt", "prompt_tokens" (counted by the Hugging Face tokenizer of the exported
folder), "max_tokens"}, and returns the rows. Run alone it prints them:
    corpus_prompts.py TOKENIZER_DIR CORPUS N SEED OUT_DIR
"""
import json
import os
import random
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Prompt and output lengths, in tokens; a prompt plus its output must fit the server's
# --seq-len (the tests use 256).
PROMPT_TOKENS = (32, 160)
OUTPUT_TOKENS = (8, 32)


def write(tokenizer_dir, corpus, n, seed, out_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    with open(corpus, encoding="utf-8") as f:
        ids = tok(f.read())["input_ids"]
    rng = random.Random(seed)
    rows, lengths = [], set()
    while len(rows) < n:
        want = rng.randint(*PROMPT_TOKENS)
        start = rng.randint(0, len(ids) - want - 1)
        text = tok.decode(ids[start:start + want])
        # Decoding and encoding again may merge or split a token at the edges: the
        # prompt's length is what the tokenizer gives for the text sent.
        count = len(tok(text)["input_ids"])
        if count in lengths or not PROMPT_TOKENS[0] <= count <= PROMPT_TOKENS[1]:
            continue
        lengths.add(count)
        rows.append({"prompt": text, "prompt_tokens": count,
                     "max_tokens": rng.randint(*OUTPUT_TOKENS)})
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "requests.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


if __name__ == "__main__":
    tok_dir, corpus, n, seed, out = sys.argv[1:6]
    for r in write(tok_dir, corpus, int(n), int(seed), out):
        print(json.dumps(r))
