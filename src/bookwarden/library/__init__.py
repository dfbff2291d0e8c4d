"""The hosted library domain: patrons, loans, searches, reading lists, message-board posts."""
