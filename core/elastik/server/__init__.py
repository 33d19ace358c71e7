"""The Elastik core server: storage engine (``engine``) and HTTP layer (``app``)."""
