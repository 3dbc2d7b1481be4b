"""Pure screening science: ingest, potentials, relax, phonons, verdict. No web, queue or database."""
