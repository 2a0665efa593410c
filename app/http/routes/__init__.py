"""Routers, one per concern: transcription (native and OpenAI), denoising, keywords, operations (models,
health, metrics), the streaming websockets, the demo page and the API docs pages (``/docs``, ``/redoc``)."""

from ..schemas import ErrorOut

# Documented error responses shared by the audio endpoints (the envelope of app.errors).
AUDIO_ERRORS = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "Empty or invalid audio (NaN/inf, bad raw PCM length)",
        401: "Missing or wrong API key",
        404: "Unknown model",
        413: "Upload or audio duration over the limit",
        415: "Audio that cannot be decoded",
        422: "Invalid parameter",
        503: "Queue full or models loading (see Retry-After), or the worker was lost",
        504: "Request deadline passed",
    }.items()
}
