"""The Python SDK for the Elastik core (stdlib only; imported by ``import elastik``).

Modules, each owning one thing: ``client`` (Elastik), ``transport`` (one-shot and
keep-alive HTTP), ``errors``, ``paths`` (path mapping), ``launcher`` (start/stop),
``dotenv``, ``listen`` (@listen + run), ``sse`` (SSE parser), ``vdir`` (ls/tree/du/mv/rm),
``worldref``, ``fileobj`` (open()), ``codecs``, ``headers`` (persist policy), ``coap``.
"""
