"""wr: the WebReducer command-line client (docs/cli.md). Talks only to the public API."""

from __future__ import annotations

__version__ = "0.1.0"
