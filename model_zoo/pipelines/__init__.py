"""Each task's inference rules, applied alike by the service (``app``) and the evaluation (``training``)."""
