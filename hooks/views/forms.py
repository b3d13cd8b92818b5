"""The UI's forms. Every one is posted with Django's CSRF token."""

from __future__ import annotations

from django import forms

from hooks.models import Key
from hooks.views.starters import STARTERS


class HookCreateForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, label="Name")
    starter = forms.ChoiceField(
        choices=[(s.slug, s.title) for s in STARTERS], initial="counter", label="Start from"
    )


class HookSettingsForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name")
    description = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Description",
    )


class KeyCreateForm(forms.Form):
    kind = forms.ChoiceField(choices=Key.Kind.choices, label="Kind")
    label = forms.CharField(max_length=100, required=False, label="Label")


class SecretForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        label="Name",
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "spellcheck": "false",
                "placeholder": "GITHUB_SECRET",
            }
        ),
    )
    # Never rendered with its value: a secret is write-only.
    value = forms.CharField(
        required=False,
        strip=False,
        label="Value",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )
