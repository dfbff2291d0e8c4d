"""Rootkit checks in the manner of OSSEC's rootcheck: what the kernel's views of the machine disagree about."""
