"""Keep secret values out of what the request log shows: user code that prints a secret, or
puts one in an exception message, sees "[secret NAME]" in the log instead."""

from __future__ import annotations

from typing import Any

# Shorter values are too likely to match ordinary text to be worth replacing.
MIN_MASKED_LENGTH = 4


def mask(text: str, secrets: dict[str, str]) -> str:
    for name, value in sorted(secrets.items(), key=lambda item: -len(item[1])):
        if len(value) >= MIN_MASKED_LENGTH and value in text:
            text = text.replace(value, f"[secret {name}]")
    return text


def mask_error(error: dict[str, Any] | None, secrets: dict[str, str]) -> dict[str, Any] | None:
    if not error or not secrets:
        return error
    return {k: mask(v, secrets) if isinstance(v, str) else v for k, v in error.items()}


def mask_value(value: Any, secrets: dict[str, str]) -> Any:
    """`value` (any JSON value) with secrets masked in every string in it, keys included."""
    if not secrets:
        return value
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, list):
        return [mask_value(item, secrets) for item in value]
    if isinstance(value, dict):
        return {mask(str(k), secrets): mask_value(v, secrets) for k, v in value.items()}
    return value
