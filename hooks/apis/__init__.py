"""The management API of hooks (docs/api.md): thin DRF views over hooks.services and hooks.replay.

Every view reaches its hook through `HookApi.hook()` (hooks.selectors.hook_get_for_user), so
another user's hook answers 404. Routes: hooks/api_urls.py; reference: docs/api.md.
"""
