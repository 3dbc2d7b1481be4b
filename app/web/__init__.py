"""The web pages (upload, batch, results, candidate, reports) served by the API app."""
