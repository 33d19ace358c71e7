# Runs under the MicroPython unix port: executes a JSON list of client operations read from
# the file named by argv[1] (the unix port crashes on arguments over 256 bytes) and prints one JSON result line per operation. Imports elastik_micro from
# MICROPYPATH (the source directory micro/, or a directory of .mpy files).
import gc
import json
import sys

import elastik_micro as em

try:
    import hashlib
except ImportError:
    hashlib = None


def value(v):
    if isinstance(v, str):
        return v
    if "rep" in v:
        return v["rep"][0].encode() * v["rep"][1]
    import binascii

    return binascii.unhexlify(v["hex"])


def body(b):
    d = {"len": len(b)}
    if len(b) <= 256:
        d["text"] = b.decode()
    if hashlib is not None:
        import binascii

        d["sha"] = binascii.hexlify(hashlib.sha256(b).digest()).decode()
    return d


def result(r):
    if isinstance(r, (bytes, bytearray)):
        return body(r)
    return r


def run(c, op):
    k = op[0]
    if k == "put":
        return c.put(op[1], value(op[2]), *op[3:])
    if k == "post":
        return c.post(op[1], value(op[2]))
    if k == "delete":
        return c.delete(op[1])
    if k == "get":
        return c.get(op[1], *op[2:])
    if k == "puts":
        # op: ["puts", path, count, prefix]: count puts of distinct values; per-put outcome
        out = []
        for i in range(op[2]):
            try:
                out.append(c.put(op[1], "%s%d" % (op[3], i)))
            except em.CoapError as e:
                out.append("E%d" % e.code)
            except OSError as e:
                out.append("O%d" % e.args[0])
        return out
    if k == "posts":
        out = []
        for i in range(op[2]):
            try:
                out.append(c.post(op[1], "%s%d;" % (op[3], i)))
            except em.CoapError as e:
                out.append("E%d" % e.code)
            except OSError as e:
                out.append("O%d" % e.args[0])
        return out
    if k == "roundtrips":
        # op: ["roundtrips", path, count]: put then get, counts matching answers
        ok = 0
        for i in range(op[2]):
            v = "r%d" % i
            c.put(op[1], v)
            if c.get(op[1]) == v.encode():
                ok += 1
        return {"ok": ok, "mem_free": gc.mem_free()}
    if k == "alloc_put":
        # op: ["alloc_put", path, value, count]: heap growth of each put, no collection between
        c.put(op[1], value(op[2]))  # warm up: path cache, attributes, poll tuple
        out = []
        for _ in range(op[3]):
            v = value(op[2])
            gc.collect()
            a = gc.mem_alloc()
            c.put(op[1], v)
            out.append(gc.mem_alloc() - a)
        return out
    if k == "sleep":
        import time

        time.sleep_ms(op[1])
        return None
    raise ValueError("unknown op " + k)


def make_client(kw):
    if kw.pop("async", False):
        import elastik_micro_async as ema

        return ema.AsyncClient(**kw)
    return em.Client(**kw)


def main():
    with open(sys.argv[1]) as f:
        ops = json.load(f)
    c = None
    for i, op in enumerate(ops):
        line = {"i": i, "op": op[0]}
        try:
            if op[0] == "client":
                c = make_client(op[1])
                r = None
            elif op[0] == "gather":
                import asyncio

                async def all_of(cl, subs):
                    return await asyncio.gather(*[run(cl, s) for s in subs])

                r = [result(x) for x in asyncio.run(all_of(c, op[1]))]
            else:
                r = run(c, op)
                if hasattr(r, "send"):  # a coroutine from AsyncClient
                    import asyncio

                    r = asyncio.run(r)
                r = result(r)
            line["r"] = r
        except em.CoapError as e:
            line.update(e="CoapError", code=e.code, msg=e.message, max_age=e.max_age)
        except OSError as e:
            line.update(e="OSError", errno=e.args[0])
        except (ValueError, TypeError) as e:
            line.update(e=type(e).__name__, msg=str(e))
        print(json.dumps(line))


main()
