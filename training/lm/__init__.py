"""General-English word n-gram language model for the recognizer's beam search (see :mod:`training.lm.build`)."""

from .build import build, build_arpa, read_trie, write_arpa

__all__ = ["build", "build_arpa", "read_trie", "write_arpa"]
