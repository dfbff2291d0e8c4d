"""Moved to bookwarden.core.authorize; this name stays until every import is rewritten."""

from bookwarden.core.authorize import *  # noqa: F403
