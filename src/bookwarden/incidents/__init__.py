"""Security incidents (NIST SP 800-61 life cycle) and personal-data breach notice (GDPR Art. 33/34)."""
