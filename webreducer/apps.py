from __future__ import annotations

from django.apps import AppConfig


class WebReducerConfig(AppConfig):
    name = "webreducer"

    def ready(self) -> None:
        from webreducer import checks  # noqa: F401  (registers the system checks)
