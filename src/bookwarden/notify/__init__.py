"""Outbound mail: an encrypted outbox, Jinja2 templates and SMTP delivery by a worker job.

`service.queue_mail` writes the message and its delivery job in the caller's transaction, so
a mail exists exactly when the business change that caused it commits. `delivery` sends it
with a real SMTP client, retries with backoff, and a sweep re-queues any message whose job was
lost, so a queued message is never forgotten.
"""
