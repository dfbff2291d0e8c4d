"""Who is calling: API tokens now; accounts, sessions and SSO plug into the same principal seam."""
