#!/usr/bin/env python3
"""Independent check of a tokenizer.json written by `loopq train-tokenizer`, using HF `tokenizers`.

Loads the file with `tokenizers.Tokenizer.from_file`, checks the special-token ids and the vocab
size, and compares the ids HF produces with `loopq tokenize` on a few texts (and on --file when
given). If the `tokenizers` package is not importable, prints "skipped" and exits 0.

usage: check_tokenizer_hf.py --tokenizer DIR_OR_JSON --loopq PATH/TO/loopq [--file TEXT]
"""
import argparse
import json
import os
import subprocess
import sys

TEXTS = [
    "Hello world! It's 2024-01-01.\n\nNew paragraph:\ttabs and  double  spaces  ",
    "Caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001F600 \u00a0nbsp",
    "<|im_start|>user\nhi there<|im_end|>\n<|endoftext|>",
    "   leading spaces and trailing newline\n",
]


def loopq_ids(loopq, tok_path, text):
    out = subprocess.run([loopq, "tokenize", "--tokenizer", tok_path, "--text", text],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--loopq", required=True)
    ap.add_argument("--file")
    args = ap.parse_args()
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("skipped: the HF tokenizers package is not importable")
        return 0

    path = args.tokenizer
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    hf = Tokenizer.from_file(path)
    failures = 0
    for tok, want in (("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)):
        if hf.token_to_id(tok) != want:
            print(f"FAIL: {tok} has id {hf.token_to_id(tok)}, expected {want}")
            failures += 1
    texts = list(TEXTS)
    if args.file:
        with open(args.file, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    for text in texts:
        ids = hf.encode(text, add_special_tokens=False).ids
        ours = loopq_ids(args.loopq, args.tokenizer, text) if len(text) < 100000 else None
        if ours is None:
            # Long files: compare through a temporary file rather than the command line.
            out = subprocess.run([args.loopq, "tokenize", "--tokenizer", args.tokenizer, "--file",
                                  args.file], check=True, capture_output=True, text=True).stdout
            ours = json.loads(out)
        if ids != ours:
            first = next((i for i, (a, b) in enumerate(zip(ids, ours)) if a != b),
                         min(len(ids), len(ours)))
            print(f"FAIL: ids differ at position {first} ({len(ids)} HF vs {len(ours)} loopq) "
                  f"for text {text[:60]!r}")
            failures += 1
        elif hf.decode(ids, skip_special_tokens=False) != text:
            print(f"FAIL: HF decode does not round-trip {text[:60]!r}")
            failures += 1
    checks = 3 + len(texts)
    print(f"{checks - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
