from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class HooksConfig(AppConfig):
    name = "hooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hooks import writes
        from hooks.models import Hook, Key

        # The write path's short cache of key rows (hooks/writes.py): a hook's limits change
        # through Hook.save(), and this process then forgets every row it holds.
        for model in (Hook, Key):
            post_save.connect(writes.keys_forget, sender=model, dispatch_uid=f"keys_forget_{model}")
            post_delete.connect(
                writes.keys_forget, sender=model, dispatch_uid=f"keys_forget_del_{model}"
            )
