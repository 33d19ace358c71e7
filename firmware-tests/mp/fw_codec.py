# Runs under the MicroPython unix port: checks elastik_micro's encode/decode against the
# aiocoap-made vectors in the JSON file argv[1], then fuzzes decode with argv[2] inputs.
# Prints one JSON line: {"vectors": n, "mismatches": [...], "fuzz": {...}}.
import json
import sys
from binascii import hexlify, unhexlify

import elastik_micro as em


def opt_value(v):
    return v if isinstance(v, int) else unhexlify(v)


def check(vectors):
    bad = []
    for i, v in enumerate(vectors):
        opts = [(n, opt_value(x)) for n, x in v["options"]]
        wire = unhexlify(v["wire"])
        payload = unhexlify(v["payload"])
        token = unhexlify(v["token"])
        got = em.encode(v["type"], v["code"], v["mid"], token, opts, payload)
        if got != wire:
            bad.append([i, "encode", hexlify(got).decode()])
            continue
        t, c, mid, tok, dopts, pl = em.decode(wire)
        want = [(n, unhexlify(x)) for n, x in v["raw_options"]]
        if (t, c, mid, tok, pl) != (v["type"], v["code"], v["mid"], token, payload):
            bad.append([i, "decode header"])
        elif [tuple(o) for o in dopts] != want:
            bad.append([i, "decode options"])
    return bad


def fuzz(seeds, rounds):
    # xorshift: deterministic across runs and ports
    x = 2463534242
    counts = {"ok": 0, "ValueError": 0, "other": []}
    for r in range(rounds):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        base = bytearray(unhexlify(seeds[r % len(seeds)]))
        if not base:
            base = bytearray(4)
        for k in range(1 + x % 4):
            pos = (x >> (3 + k)) % len(base)
            base[pos] = (x >> (8 * (k % 4))) & 255
        if x & 1 and len(base) > 1:
            base = base[: (x >> 5) % len(base)]
        try:
            em.decode(bytes(base))
            counts["ok"] += 1
        except ValueError:
            counts["ValueError"] += 1
        except Exception as e:  # the failure this loop exists to find
            counts["other"].append([hexlify(base).decode(), repr(e)])
    return counts


with open(sys.argv[1]) as f:
    vectors = json.load(f)
out = {"vectors": len(vectors), "mismatches": check(vectors)}
out["fuzz"] = fuzz([v["wire"] for v in vectors], int(sys.argv[2]))
print(json.dumps(out))
