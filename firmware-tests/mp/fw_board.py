# A board-sized program for the heap tests: what a sensor's main.py does, nothing more
# (no json, no hashlib). argv: host port token mode count; mode is "roundtrips" (put then
# get, count matching answers) or "alloc" (heap growth of each put, no collection between).
# Prints "free <bytes>" after setup, then "ok <n>" or "alloc <a> <b> ...", then "end <free>".
import gc
import sys

import micropython

import elastik_micro as em

host, port, token, mode, count = sys.argv[1:6]
count = int(count)
c = em.Client(host, int(port), token=token, timeout_ms=1000)
gc.collect()
print("free", gc.mem_free())
if "-v" in sys.argv:
    micropython.mem_info(1)
if mode == "roundtrips":
    ok = 0
    for i in range(count):
        v = "r%d" % i
        c.put("fw/board", v)
        if c.get("fw/board") == v.encode():
            ok += 1
    print("ok", ok)
else:
    c.put("sensor/alloc", "0")  # warm up: path cache, attributes, the poll tuple
    out = [0] * count  # allocated before measuring
    for i in range(count):
        v = "%d.5" % (i % 40)
        gc.collect()
        a = gc.mem_alloc()
        c.put("sensor/alloc", v)
        out[i] = gc.mem_alloc() - a
    print("alloc", " ".join(str(x) for x in out))
gc.collect()
print("end", gc.mem_free())
