"""Parsers: log lines (syslog RFC 3164 and 5424, sshd and PAM messages, Apache logs, JSON lines) into events."""
