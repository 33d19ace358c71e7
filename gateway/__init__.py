"""Elastik Edge gateway: CoAP, MQTT and serial front doors into the core over HTTP."""

__version__ = "0.1.0"
