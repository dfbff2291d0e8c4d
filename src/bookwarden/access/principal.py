"""Moved to bookwarden.core.principal; this name stays until every import is rewritten."""

from bookwarden.core.principal import *  # noqa: F403
