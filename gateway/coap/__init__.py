"""CoAP front door: datagram pre-filter, pure mapping, aiocoap site and transport."""
