"""Bookwarden: hosting library customer data under an enforced security and privacy model."""
