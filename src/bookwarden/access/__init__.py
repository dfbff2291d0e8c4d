"""Who may do what: the permission catalogue, roles, segregation of duties; authorize() decides."""
