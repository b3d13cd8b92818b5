from __future__ import annotations

from django import forms

from accounts.services import email_normalize


class EmailForm(forms.Form):
    email = forms.CharField(
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
    )

    def clean_email(self) -> str:
        return email_normalize(self.cleaned_data["email"])
