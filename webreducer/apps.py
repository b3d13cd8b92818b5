from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class WebReducerConfig(AppConfig):
    name = "webreducer"

    def ready(self) -> None:
        from webreducer import checks  # noqa: F401  (registers the system checks)


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin with a site that refuses lookups on secrets (webreducer.admin_site)."""

    default_site = "webreducer.admin_site.SecretSafeAdminSite"
