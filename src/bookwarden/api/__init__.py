"""HTTP: the FastAPI app, the request pipeline (token -> principal -> tenant context -> route), errors."""
