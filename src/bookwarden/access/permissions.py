"""Moved to bookwarden.core.permissions; this name stays until every import is rewritten."""

from bookwarden.core.permissions import *  # noqa: F403
