"""identity/enrolment: see the modules of this package."""
