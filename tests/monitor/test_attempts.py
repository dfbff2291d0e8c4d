"""sshd attempt grouping: the lines one failed attempt leaves are one attempt, counted once, per connection (pid)."""

from __future__ import annotations

from bookwarden.monitor.parse.reader import Format, read


def attempts(log: str) -> list[tuple[int, str]]:
    """(line number, address) of each line that starts an attempt."""
    lines = [line.strip() for line in log.strip().splitlines()]
    events = list(read(lines, Format.SYSLOG, year=2026))
    return [(e.line_number, e.source_address) for e in events if e.fields.get("auth_attempt") == "started"]


def marks(log: str) -> list[str | None]:
    lines = [line.strip() for line in log.strip().splitlines()]
    return [e.fields.get("auth_attempt") for e in read(lines, Format.SYSLOG, year=2026)]


def test_invalid_user_pam_and_failed_password_of_one_guess_are_one_attempt():
    log = """
    Mar  1 12:00:00 h sshd[10]: Invalid user admin from 192.0.2.1 port 5000
    Mar  1 12:00:00 h sshd[10]: pam_unix(sshd:auth): check pass; user unknown
    Mar  1 12:00:00 h sshd[10]: pam_unix(sshd:auth): authentication failure; tty=ssh rhost=192.0.2.1
    Mar  1 12:00:02 h sshd[10]: Failed password for invalid user admin from 192.0.2.1 port 5000 ssh2
    Mar  1 12:00:02 h sshd[10]: Connection closed by invalid user admin 192.0.2.1 port 5000 [preauth]
    """
    assert marks(log) == ["started", None, "continued", "continued", None]


def test_three_guesses_in_one_connection_are_three_attempts():
    log = """
    Mar  1 12:00:00 h sshd[10]: Invalid user admin from 192.0.2.1 port 5000
    Mar  1 12:00:00 h sshd[10]: pam_unix(sshd:auth): authentication failure; tty=ssh rhost=192.0.2.1
    Mar  1 12:00:02 h sshd[10]: Failed password for invalid user admin from 192.0.2.1 port 5000 ssh2
    Mar  1 12:00:03 h sshd[10]: pam_unix(sshd:auth): authentication failure; tty=ssh rhost=192.0.2.1
    Mar  1 12:00:05 h sshd[10]: Failed password for invalid user admin from 192.0.2.1 port 5000 ssh2
    Mar  1 12:00:06 h sshd[10]: Failed password for invalid user admin from 192.0.2.1 port 5000 ssh2
    Mar  1 12:00:06 h sshd[10]: error: maximum authentication attempts exceeded for invalid user x from 192.0.2.1
    Mar  1 12:00:06 h sshd[10]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=192.0.2.1
    """
    assert marks(log) == ["started", "continued", "continued", "started", "continued", "started", None, None]


def test_a_connection_that_only_logs_invalid_user_counts_as_one():
    log = """
    Mar  1 12:00:00 h sshd[10]: Invalid user oracle from 192.0.2.1 port 5000
    Mar  1 12:00:00 h sshd[10]: Failed none for invalid user oracle from 192.0.2.1 port 5000 ssh2
    Mar  1 12:00:01 h sshd[10]: Connection closed by invalid user oracle 192.0.2.1 port 5000 [preauth]
    Mar  1 12:00:01 h sshd[11]: Invalid user test from 192.0.2.1 port 5001
    Mar  1 12:00:01 h sshd[11]: Received disconnect from 192.0.2.1 port 5001:11: Bye Bye [preauth]
    """
    assert attempts(log) == [(1, "192.0.2.1"), (4, "192.0.2.1")]


def test_publickey_password_and_keyboard_interactive_failures_each_count():
    log = """
    Mar  1 12:00:00 h sshd[10]: Failed publickey for root from 192.0.2.1 port 5000 ssh2: RSA SHA256:x
    Mar  1 12:00:01 h sshd[10]: pam_unix(sshd:auth): authentication failure; tty=ssh rhost=192.0.2.1  user=root
    Mar  1 12:00:01 h sshd[10]: error: PAM: Authentication failure for root from 192.0.2.1
    Mar  1 12:00:03 h sshd[10]: Failed keyboard-interactive/pam for root from 192.0.2.1 port 5000 ssh2
    Mar  1 12:00:04 h sshd[10]: Failed password for root from 192.0.2.1 port 5000 ssh2
    Mar  1 12:00:05 h sshd[10]: Failed hostbased for root from 192.0.2.1 port 5000 ssh2
    """
    assert marks(log) == ["started", "started", "continued", "continued", "started", None]


def test_interleaved_connections_are_kept_apart_by_pid():
    log = """
    Mar  1 12:00:00 h sshd[10]: Invalid user a from 192.0.2.1 port 1
    Mar  1 12:00:00 h sshd[11]: Invalid user b from 192.0.2.2 port 2
    Mar  1 12:00:01 h sshd[10]: Failed password for invalid user a from 192.0.2.1 port 1 ssh2
    Mar  1 12:00:01 h sshd[11]: Failed password for invalid user b from 192.0.2.2 port 2 ssh2
    """
    assert attempts(log) == [(1, "192.0.2.1"), (2, "192.0.2.2")]


def test_logs_holding_only_pam_lines_count_one_attempt_per_failure():
    # The loghub sample's shape: check pass and authentication failure, and a pid reused a week later.
    log = """
    Jun 23 02:55:14 combo sshd(pam_unix)[19085]: check pass; user unknown
    Jun 23 02:55:14 combo sshd(pam_unix)[19085]: authentication failure; tty=NODEVssh rhost=200.60.37.201
    Jun 30 19:03:01 combo sshd(pam_unix)[19085]: authentication failure; tty=NODEVssh rhost=60.30.224.116  user=root
    """
    assert attempts(log) == [(2, "200.60.37.201"), (3, "60.30.224.116")]


def test_a_pid_reused_after_the_login_grace_time_starts_afresh():
    log = """
    Mar  1 12:00:00 h sshd[10]: Invalid user a from 192.0.2.1 port 1
    Mar  1 12:02:01 h sshd[10]: Failed password for invalid user z from 192.0.2.9 port 9 ssh2
    """
    assert attempts(log) == [(1, "192.0.2.1"), (2, "192.0.2.9")]


def test_a_connection_that_ended_does_not_lend_its_open_attempt_to_the_next_one():
    log = """
    Mar  1 12:00:00 h sshd[10]: Invalid user a from 192.0.2.1 port 1
    Mar  1 12:00:00 h sshd[10]: Connection closed by invalid user a 192.0.2.1 port 1 [preauth]
    Mar  1 12:00:01 h sshd[10]: Failed password for root from 192.0.2.9 port 9 ssh2
    Mar  1 12:00:02 h sshd[12]: Accepted password for alice from 192.0.2.5 port 7 ssh2
    """
    assert attempts(log) == [(1, "192.0.2.1"), (3, "192.0.2.9")]
