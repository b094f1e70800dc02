"""Reference solutions of chapter 3, and the two apps that its notebook runs as uvicorn processes."""
