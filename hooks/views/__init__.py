"""The views: the public write and read endpoints (public.py: no login, the key in the URL is
the credential), and the web UI: server-rendered pages (pages.py), self-refreshing panels and
panel forms (panels.py), the docs page (docs.py). Every UI view reaches a hook through
hooks.selectors.hook_get_for_user: another user's hook is a 404. See docs/ui.md."""
