"""Wording shared by the CLI, the panels and the app."""

from __future__ import annotations


def choices_text(choices: dict[str, str]) -> str:
    """'given: each image is a face; detect: …': named choices with what each does, in one line."""
    return "; ".join(f"{name}: {text}" for name, text in choices.items())


def unbroken(*parts) -> str:
    """``parts`` joined by no-break spaces: a narrow cell or caption wraps around them, never between a label and
    its number ("angry 0.41")."""
    return "\u00a0".join(str(p) for p in parts)


def number(value, digits: int = 2) -> str:
    """``value`` to ``digits`` decimals, or "—" where there is nothing to measure (None, NaN)."""
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def plural(n: int, noun: str) -> str:
    """'1 face', '3 faces', '0 faces' (a regular noun: every one ferx counts)."""
    return f"{n:,} {noun if n == 1 else noun + 's'}"


def short_count(n: int) -> str:
    """A count to three figures (or whole millions), for a table: '52.9 M', '356 k', '950', '1,235 M'."""
    if n >= 999_500:
        return f"{n / 1e6:.3g} M" if n < 999_500_000 else f"{n / 1e6:,.0f} M"
    return f"{n / 1e3:.3g} k" if n >= 999.5 else f"{n}"
