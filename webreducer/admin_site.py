"""The admin site: no filter, search, ordering or reference may touch a secret-bearing field.

The admin masks key tokens and never shows hashes or ciphertext, but a filter in the query
string still runs against the column: `/admin/hooks/key/?token__startswith=a` answered with
one row or none, and counting rows recovered a full write key a character at a time (issue 13,
finding 7: 1,332 requests). The same worked on token hashes, ciphertext and password hashes,
also through relations (`/admin/hooks/hook/?keys__token__startswith=…`).

So every ModelAdmin registered on this site (ours, Django's, allauth's: SecretSafeAdminSite
mixes SecretLookupGuard into each) refuses, with a 400, any lookup path that reaches a field in
SECRET_FIELDS, directly or through relations: query-string filters (`lookup_allowed`), search
fields, the changelist's ordering (`o=` and every other source) and `_to_field`. The system
check `webreducer.E020` refuses at start-up an admin whose configuration would need one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.exceptions import DisallowedModelAdminLookup
from django.contrib.admin.views.main import ChangeList
from django.core import checks
from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

# "app_label.Model.field" of every stored credential, or value that derives from one and that
# the admin does not show in full. tests/security/test_admin_oracle.py fails when a field whose
# name looks like a credential is neither here nor in its list of fields that are not secret.
SECRET_FIELDS: frozenset[str] = frozenset(
    {
        "hooks.Key.token",  # a hook's write or read key: the credential of the public endpoints
        "hooks.Secret.ciphertext",  # a secret's value, encrypted
        "accounts.ApiToken.token_hash",
        "accounts.MagicLink.token_hash",
        "accounts.User.password",  # the hash; the admin shows it masked
        "account.EmailConfirmation.key",  # allauth's address-confirmation key
        "sessions.Session.session_key",
        "sessions.Session.session_data",
    }
)
SEARCH_PREFIXES = "^=@"


def _field_label(field: Any) -> str | None:
    if not isinstance(field, models.Field) or field.model is None:
        return None  # a reverse relation: the field that holds the data is on the other side
    return f"{field.model._meta.label}.{field.name}"


def secret_field_in(model: type[models.Model], path: str) -> str | None:
    """The secret-bearing field ("app.Model.field") that lookup `path` reaches from `model`."""
    for part in path.split(LOOKUP_SEP):
        try:
            field = model._meta.pk if part == "pk" else model._meta.get_field(part)
        except FieldDoesNotExist:
            return None  # a lookup or transform ("startswith", "year"): the path is over
        label = _field_label(field)
        if label in SECRET_FIELDS:
            return label
        related = field.related_model if field.is_relation else None
        if not isinstance(related, type):
            return None  # not a relation: what follows are lookups and transforms
        model = related
    return None


def _refuse_secret(model: type[models.Model], path: str, what: str) -> None:
    label = secret_field_in(model, path)
    if label is not None:
        # SuspiciousOperation: a 400, and a line in the django.security log for operators.
        raise DisallowedModelAdminLookup(f"{what} by {path!r} is not allowed: {label} is secret")


def ordering_paths(ordering: Iterable[Any]) -> Iterator[str]:
    """The field paths an ordering (names, F(), OrderBy, other expressions) sorts by."""
    for item in ordering:
        if isinstance(item, str):
            if item != "?":
                yield item.lstrip("-")
        elif isinstance(item, models.F):
            yield item.name
        elif hasattr(item, "get_source_expressions"):
            yield from ordering_paths(item.get_source_expressions())


@functools.cache
def _guarded_changelist(base: type[ChangeList]) -> type[ChangeList]:
    class GuardedChangeList(base):  # type: ignore[valid-type,misc]
        def get_ordering(self, request: HttpRequest, queryset: Any) -> list[Any]:
            # Sorted by a secret, a list leaks it too: your own key's position among the
            # others tells theirs apart, one comparison at a time.
            ordering = super().get_ordering(request, queryset)
            for path in ordering_paths(ordering):
                _refuse_secret(self.model, path, "Ordering")
            return ordering

    GuardedChangeList.__name__ = GuardedChangeList.__qualname__ = f"Guarded{base.__name__}"
    return GuardedChangeList


class SecretLookupGuard:
    """Refuses filters, searches, orderings and references that reach a secret-bearing field."""

    model: type[models.Model]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # Before Django's own rules, which allow any lookup on a model's own fields.
        if secret_field_in(self.model, lookup) is not None:
            return False
        return super().lookup_allowed(lookup, value, request)  # type: ignore[misc]

    def to_field_allowed(self, request: HttpRequest, to_field: str) -> bool:
        if secret_field_in(self.model, to_field) is not None:
            return False
        return super().to_field_allowed(request, to_field)  # type: ignore[misc]

    def get_search_results(
        self, request: HttpRequest, queryset: Any, search_term: str
    ) -> tuple[Any, bool]:
        for name in self.get_search_fields(request):  # type: ignore[attr-defined]
            _refuse_secret(self.model, str(name).lstrip(SEARCH_PREFIXES), "Searching")
        return super().get_search_results(request, queryset, search_term)  # type: ignore[misc]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _guarded_changelist(super().get_changelist(request, **kwargs))  # type: ignore[misc]


def guarded(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """`admin_class` with SecretLookupGuard first in its bases (itself when it has it)."""
    if issubclass(admin_class, SecretLookupGuard):
        return admin_class
    attrs = {
        "__module__": admin_class.__module__,
        "__qualname__": admin_class.__qualname__,
        "__doc__": admin_class.__doc__,
    }
    return type(admin_class.__name__, (SecretLookupGuard, admin_class), attrs)


class SecretSafeAdminSite(admin.AdminSite):
    """The default admin site (webreducer.apps.AdminConfig): every registration is guarded."""

    def register(
        self,
        model_or_iterable: Any,
        admin_class: type[admin.ModelAdmin] | None = None,
        **options: Any,
    ) -> None:
        super().register(model_or_iterable, guarded(admin_class or admin.ModelAdmin), **options)


# --- The start-up check -----------------------------------------------------------------------


def _sortable_paths(model_admin: admin.ModelAdmin) -> Iterator[str]:
    """What the changelist's columns can be sorted by (`o=`), as ChangeList resolves them."""
    sortable = model_admin.sortable_by
    for name in model_admin.list_display:
        if not isinstance(name, str) or (sortable is not None and name not in sortable):
            continue
        try:
            model_admin.model._meta.get_field(name)
            yield name
            continue
        except FieldDoesNotExist:
            pass
        if LOOKUP_SEP in name:
            yield name
            continue
        attr = getattr(model_admin, name, None) or getattr(model_admin.model, name, None)
        if isinstance(attr, property):
            attr = attr.fget
        order_field = getattr(attr, "admin_order_field", None)
        if order_field is not None:
            yield from ordering_paths([order_field])


def _configured_paths(model_admin: admin.ModelAdmin) -> Iterator[tuple[str, str]]:
    for item in model_admin.list_filter:
        if isinstance(item, str):
            yield "list_filter", item
        elif isinstance(item, (list, tuple)) and isinstance(item[0], str):
            yield "list_filter", item[0]
    for name in model_admin.search_fields:
        yield "search_fields", str(name).lstrip(SEARCH_PREFIXES)
    for path in ordering_paths(model_admin.ordering or ()):
        yield "ordering", path
    if model_admin.date_hierarchy:
        yield "date_hierarchy", model_admin.date_hierarchy
    for path in _sortable_paths(model_admin):
        yield "list_display (sortable)", path


@checks.register(checks.Tags.admin, checks.Tags.security)
def admin_secret_lookups(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    return site_secret_errors(admin.site)


def site_secret_errors(site: admin.AdminSite) -> list[checks.CheckMessage]:
    """What on `site` would let staff filter, search or sort by a secret (webreducer.E020)."""
    errors: list[checks.CheckMessage] = []
    for label in sorted(SECRET_FIELDS):
        app_label, model_name, field_name = label.split(".")
        model = apps.all_models.get(app_label.lower(), {}).get(model_name.lower())
        if model is not None and field_name not in {f.name for f in model._meta.get_fields()}:
            errors.append(
                checks.Error(
                    f"SECRET_FIELDS names {label}, which does not exist.", id="webreducer.E021"
                )
            )
    for model, model_admin in site._registry.items():
        if not isinstance(model_admin, SecretLookupGuard):
            errors.append(
                checks.Error(
                    f"The admin of {model._meta.label} is not guarded against secret lookups.",
                    hint="Register admins on webreducer.admin_site.SecretSafeAdminSite "
                    "(INSTALLED_APPS: webreducer.apps.AdminConfig).",
                    obj=model_admin,
                    id="webreducer.E020",
                )
            )
        for option, path in _configured_paths(model_admin):
            secret = secret_field_in(model, path)
            if secret is not None:
                errors.append(
                    checks.Error(
                        f"{option} {path!r} reaches {secret}, a secret: the admin would let "
                        "staff recover it by filtering, searching or sorting.",
                        obj=model_admin,
                        id="webreducer.E020",
                    )
                )
    return errors
