"""The HTTP face of the service: routes (one module per concern, websockets included), their dependencies (the
one API-key check and the one model lookup, for HTTP and websockets alike), request and response schemas,
upload limits, metrics, transcript formats and log redaction.
"""
