#!/usr/bin/env python3
"""Writes the seed corpora: corpus/decode_request/seed-* (one line, no newline) and
corpus/primary_stream/seed-* (raw client bytes). Every file stays under 64 KiB.
Run from anywhere: python3 fuzz/make-seeds.py"""
import json, os

here = os.path.dirname(os.path.abspath(__file__))

def req(**kw):
    m = {"v": 1, "argv": ["editor", "b.txt"], "cwd": "/home/me", "env": {}, "pid": 123, "data": None}
    m.update(kw)
    return m

def j(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()

deep = b"[" * 200 + b"]" * 200
lines = {
    "valid": j(req()),
    "valid-minimal": b'{"v":1,"argv":[]}',
    "valid-full": j(req(env={"XDG_ACTIVATION_TOKEN": "tok", "DESKTOP_STARTUP_ID": "id"},
                        data={"k": [1, 2.5, -3, True, None, "s", {"n": {}}]})),
    "valid-reordered": b'{"data":{"a":1},"pid":null,"env":null,"cwd":null,"argv":["x"],"v":1,"extra":[1]}',
    "bytes": j(req(argv=["p", {"bytes": [97, 255, 254, 47, 0]}], cwd={"bytes": [47, 0xC3, 0x28]})),
    "bytes-bad": j(req(argv=[{"bytes": [256, -1, 1.5, "a"]}])),
    "base64": j(req(argv=["p", {"base64": "Yf/+LwA="}], cwd={"base64": "L8Mo"})),
    "base64-bad": j(req(argv=[{"base64": "Yf/+LwA"}, {"base64": "Zm9="}, {"base64": 1}])),
    "bytes-empty": j(req(argv=[{"bytes": []}], env={"A": {"bytes": [0xFF]}})),
    "wide": j(req(argv=[{"wide": [0xD800, 0x61, 0xDFFF, 65535]}], cwd={"wide": [0x2F, 0xD83D, 0xDE00]})),
    "wide-bad": j(req(argv=[{"wide": [65536]}, {"wide": [], "bytes": []}, {"other": [1]}])),
    "pid-1e400": b'{"v":1,"argv":[],"pid":1e400}',
    "pid-2-64": b'{"v":1,"argv":[],"pid":18446744073709551616}',
    "pid-neg": b'{"v":1,"argv":[],"pid":-1}',
    "pid-u32max": b'{"v":1,"argv":[],"pid":4294967295}',
    "pid-u32max-plus1": b'{"v":1,"argv":[],"pid":4294967296}',
    "pid-float": b'{"v":1,"argv":[],"pid":1.0}',
    "data-numbers": b'{"v":1,"argv":[],"data":[1e308,-1e-308,5e-324,-0.0,0.1,18446744073709551615,18446744073709551616,-9223372036854775808,-9223372036854775809,1.7976931348623157e308,2.2250738585072014e-308,123456789012345678901234567890,1E+2,1e-400]}',
    "data-out-of-range": b'{"v":1,"argv":[],"data":[1e400,-1.7976931348623159e308,179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792]}',
    "data-long-integer": b'{"v":1,"argv":[],"data":1' + b"0" * 400 + b"}",
    "data-lone-surrogate": b'{"v":1,"argv":[],"data":{"\\udfff":"\\ud800x","ok":"\\ud83d\\ude00"}}',
    "data-deep": b'{"v":1,"argv":[],"data":' + deep + b"}",
    "data-deep-obj": b'{"v":1,"argv":[],"data":' + b'{"a":' * 130 + b"1" + b"}" * 130 + b"}",
    "missing-v": b'{"argv":["x"]}',
    "missing-argv": b'{"v":1}',
    "argv-not-array": b'{"v":1,"argv":"x"}',
    "env-not-object": b'{"v":1,"argv":[],"env":[1]}',
    "env-bad-value": b'{"v":1,"argv":[],"env":{"A":1}}',
    "v2": b'{"v":2,"argv":[]}',
    "v-string": b'{"v":"1","argv":[]}',
    "v-float": b'{"v":1.0,"argv":[]}',
    "v-null": b'{"v":null,"argv":[]}',
    "not-object": b'[1,2,3]',
    "empty": b"",
    "whitespace": b" \t ",
    "truncated": j(req())[:40],
    "unicode-escapes": b'{"v":1,"argv":["\\u00fc\\u4e2d\\ud83d\\ude00\\n\\"\\\\\\/\\b\\f\\r\\t\\u0000"],"cwd":"\\u2028"}',
    "lone-surrogate": b'{"v":1,"argv":["\\ud800"]}',
    "lone-low-surrogate": b'{"v":1,"argv":["a\\udc00b"]}',
    "raw-utf8": j(req(argv=["ü", "中", "😀", "\u2028"])),
    "invalid-utf8": b'{"v":1,"argv":["\xff\xfe"]}',
    "dup-keys": b'{"v":1,"v":2,"argv":[],"argv":["x"]}',
    "reply-ok": b'{"v":1,"ok":true,"exit_code":0,"stdout":"","stderr":"","data":null}',
    "reply-error": b'{"v":1,"ok":false,"exit_code":1,"error":"message too large (limit 1048576 bytes)"}',
    "reply-retry": b'{"v":1,"ok":false,"exit_code":1,"error":"closing","retry":true}',
    "reply-mixed": b'{"v":1,"ok":false,"stdout":"x","stderr":"y","data":[1],"retry":false}',
    "reply-ok-retry": b'{"v":1,"ok":true,"retry":true,"error":"e"}',
    "reply-exit-big": b'{"v":1,"ok":true,"exit_code":2147483648}',
    "reply-exit-neg": b'{"v":1,"ok":true,"exit_code":-2147483648,"stdout":1}',
    "reply-minimal": b'{"v":1,"ok":true}',
}

def write(target, name, data):
    assert len(data) < 64 * 1024, name
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)

for name, line in lines.items():
    write("decode_request", name, line)
    write("primary_stream", name, line + b"\n")

stream_only = {
    "no-newline": j(req()),
    "two-lines": j(req()) + b"\n" + j(req(argv=["second"])) + b"\n",
    "empty-line": b"\n",
    "crlf": j(req()) + b"\r\n",
    "newline-first": b"\n" + j(req()) + b"\n",
    "nul-bytes": b"\0" * 64 + b"\n",
    "long-line": j(req(data="x" * 60000)) + b"\n",
    "long-no-newline": b"[" + b"1," * 30000,
    "trailing-garbage": j(req()) + b"\n\xff\xff\xff garbage",
    "qt-style": b"hello\n",
}
for name, data in stream_only.items():
    write("primary_stream", name, data)
