"""Audio in and out of the service, on the CPU of the HTTP process (no model code here).

* :mod:`.decode`: any container FFmpeg knows, or raw PCM, to a mono :class:`~.decode.Audio`; validation;
* :mod:`.wav`: plain PCM WAV read without FFmpeg (the common upload, much cheaper);
* :mod:`.pcm`: the one PCM codec (bytes <-> float32), for raw uploads, raw responses and websocket frames;
* :mod:`.resample`: offline resampling with bounded kernel memory;
* the one crop-or-pad-to-a-length rule is :func:`model_zoo.samples.fit_length` (training needs it too);
* :mod:`.encode`: WAV, FLAC or raw PCM responses; :mod:`.warmup`: the first FFmpeg call, paid at startup.
"""
