"""Report: what is made of results for people — summaries, stability rates, plots, artifact files."""
