"""The compute side: the Celery app and its thin tasks, and the pure screening science."""
