"""Reports of suspected unauthorised access to an account, or that a child's data is held."""
