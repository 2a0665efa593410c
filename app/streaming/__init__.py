"""The streaming websockets' service: one live session per connection, from ``session.start`` to the close.

:mod:`.messages` (the protocol's messages and their parsing) -> :mod:`.connection` (serialised sends, an
inbox that always reads the socket, close codes) -> :mod:`.handler` (one connection's life: admission of the
session, the receive loop, the end) -> :mod:`.protocols` (what each task sends back) and :mod:`.live` (audio
from the client into a resident session, through :mod:`.resampler`); :mod:`.utterances` cuts a transcription at
its endpoints (a fresh session per utterance). :mod:`.realtime` (with :mod:`.realtime_messages`) speaks OpenAI's
Realtime transcription API over the same pieces. :mod:`.client` is the command-line client. The route itself is :mod:`app.http.routes.stream`; the pool is reached only through
:class:`app.engine.Engine`.
"""
