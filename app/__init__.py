"""phononscreen front door: CLI, FastAPI app, web pages."""
