"""The database: declarative base, one module per table, sessions and data functions."""
