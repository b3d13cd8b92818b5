"""The web UI: server-rendered pages (pages.py), self-refreshing panels and panel forms
(panels.py), the docs page (docs.py). Every view reaches a hook through
hooks.selectors.hook_get_for_user: another user's hook is a 404. See docs/ui.md."""
